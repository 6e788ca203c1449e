package io.dtrain.parallel;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** How differing settings are named (the check itself runs over the store in the launcher's BringUpErrorsTest). */
class AgreementTest {
    @Test
    void namesEachDifferingSettingWithItsValuesAndRanks() {
        List<Map<String, String>> byRank = List.of(
                Map.of("A", "1", "B", "x", "C", "same"),
                Map.of("A", "2", "B", "x", "C", "same"),
                Map.of("A", "1", "B", "y", "C", "same"));
        assertEquals(List.of("A differs between ranks (1 on ranks 0, 2; 2 on rank 1)",
                "B differs between ranks (x on ranks 0, 1; y on rank 2)"), Agreement.describeDifferences(byRank));
    }

    @Test
    void nothingWhenAllAgree() {
        assertEquals(List.of(), Agreement.describeDifferences(List.of(Map.of("A", "1"), Map.of("A", "1"))));
    }

    @Test
    void aSettingOneRankDidNotCheckIsNamedToo() {
        assertEquals(List.of("A differs between ranks (1 on rank 0; (not checked) on rank 1)"),
                Agreement.describeDifferences(List.of(Map.of("A", "1"), Map.of())));
    }
}
