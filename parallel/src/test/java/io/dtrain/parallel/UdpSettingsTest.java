package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.aeron.driver.ThreadingMode;
import io.dtrain.common.UserFacingException;
import io.dtrain.parallel.transport.DriverMain;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The udp path's settings for hosts other than the 2-core default: the mtu between hosts, the driver's threads. */
class UdpSettingsTest {
    @Test
    void theMtuBetweenHostsIs8KiBUnlessSetAndThenAMultipleOf32ThatLeavesRoomForTheMac() {
        assertEquals(8192, Inbound.networkMtu(Map.of(), true));
        assertEquals(65472, Inbound.networkMtu(Map.of("DTRAIN_UDP_MTU", "65472"), true));
        assertEquals(65504, Inbound.networkMtu(Map.of("DTRAIN_UDP_MTU", "65504"), false));
        assertEquals(16384, Inbound.networkMtu(Map.of("DTRAIN_UDP_MTU", "16KiB"), true));
        UserFacingException tooLarge = assertThrows(UserFacingException.class,
                () -> Inbound.networkMtu(Map.of("DTRAIN_UDP_MTU", "65504"), true));
        assertEquals("DTRAIN_UDP_MTU=65504 must be a multiple of 32 from 1024 to 65472 bytes (with the udp MAC's 28-byte"
                + " trailer); the default is 8192", tooLarge.getMessage());
        assertThrows(UserFacingException.class, () -> Inbound.networkMtu(Map.of("DTRAIN_UDP_MTU", "9000"), true));
        assertThrows(UserFacingException.class, () -> Inbound.networkMtu(Map.of("DTRAIN_UDP_MTU", "512"), false));
        assertThrows(UserFacingException.class, () -> Inbound.networkMtu(Map.of("DTRAIN_UDP_MTU", "lots"), false));
    }

    @Test
    void theDriverSharesOneNetworkThreadUnlessToldOtherwise() {
        assertEquals(ThreadingMode.SHARED_NETWORK, DriverMain.threadingMode(Map.of()));
        assertEquals(ThreadingMode.DEDICATED, DriverMain.threadingMode(Map.of("DTRAIN_DRIVER_THREADING", "dedicated")));
        assertEquals(ThreadingMode.SHARED, DriverMain.threadingMode(Map.of("DTRAIN_DRIVER_THREADING", "SHARED")));
        UserFacingException e = assertThrows(UserFacingException.class,
                () -> DriverMain.threadingMode(Map.of("DTRAIN_DRIVER_THREADING", "INVOKER")));
        assertEquals("DTRAIN_DRIVER_THREADING='INVOKER' must be SHARED_NETWORK (the default), DEDICATED or SHARED",
                e.getMessage());
    }
}
