package io.dtrain.parallel.spawn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class WorkerJvmTest {
    @Test
    void theProjectOptionsComeFromJvmPropertiesAndTheCallersWin() {
        List<String> project = WorkerJvm.projectOptions();
        assertTrue(project.contains("--add-opens=java.base/java.nio=ALL-UNNAMED"), project.toString());
        assertFalse(project.stream().anyMatch(o -> o.contains("${")), "filtered by the build: " + project);

        List<String> command = WorkerJvm.of(WorkerJvmTest.class).prefix(List.of("taskset", "-c", "0"))
                .jvmOptions(List.of("-Xmx300m")).args(List.of("a", "b")).command(3);
        assertEquals(List.of("taskset", "-c", "0"), command.subList(0, 3));
        assertTrue(command.get(3).endsWith("/bin/java"), command.get(3));
        assertEquals(project, command.subList(4, 4 + project.size()));
        assertEquals("-Xmx300m", command.get(4 + project.size()), "the caller's options follow the project's, so they win");
        assertTrue(command.contains("-Ddtrain.rank=3"), command.toString());
        assertEquals(List.of(WorkerJvmTest.class.getName(), "a", "b"), command.subList(command.size() - 3, command.size()));
    }

    @Test
    void aWorkerGetsTheJobsEnvironmentAndItsRanks() {
        Map<String, String> job = WorkerJvm.oneHostJob("unit", 4);
        assertEquals("4", job.get("WORLD_SIZE"));
        assertEquals("127.0.0.1", job.get("MASTER_ADDR"));
        assertTrue(job.get("DTRAIN_JOB_ID").startsWith("unit-"), job.get("DTRAIN_JOB_ID"));
        assertNotEquals(job.get("DTRAIN_JOB_SECRET"), WorkerJvm.oneHostJob("unit", 4).get("DTRAIN_JOB_SECRET"));

        ProcessBuilder builder = WorkerJvm.of(WorkerJvmTest.class).environment(job).processBuilder(5, 1);
        assertEquals("5", builder.environment().get("RANK"));
        assertEquals("1", builder.environment().get("LOCAL_RANK"));
        assertEquals(job.get("MASTER_PORT"), builder.environment().get("MASTER_PORT"));
        assertEquals(System.getenv("PATH"), builder.environment().get("PATH"), "on top of this process's environment");
    }
}
