package io.dtrain.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.snakeyaml.engine.v2.api.Load;
import org.snakeyaml.engine.v2.api.LoadSettings;
import picocli.CommandLine;

/**
 * examples/k8s: every field of the manifests that dtrain depends on agrees with the others and with dtrain's real
 * command line (LaunchCommand's and TrainCommand's own picocli specs parse the container's arguments).
 */
class K8sManifestsTest {
    private static final Path DIR = Path.of("examples/k8s");
    private static Map<String, Map<String, Object>> byKind;

    @BeforeAll
    static void load() throws IOException {
        byKind = new HashMap<>();
        List<String> resources = strings(map(single("kustomization.yaml")).get("resources"));
        for (String file : resources) {
            Map<String, Object> doc = single(file);
            byKind.put((String) doc.get("kind"), doc);
        }
        assertEquals(Map.of("Job", 1, "Service", 1, "PersistentVolumeClaim", 1).keySet(), byKind.keySet());
        Map<String, Object> secret = single("secret.yaml");
        byKind.put((String) secret.get("kind"), secret);
    }

    @Test
    void theJobIsIndexedWithOnePodPerNodeAndTheRendezvousOnPod0() {
        Map<String, Object> job = byKind.get("Job");
        Map<String, Object> spec = map(job.get("spec"));
        Map<String, Object> pod = map(map(spec.get("template")).get("spec"));
        Map<String, Object> service = byKind.get("Service");
        Map<String, Object> serviceSpec = map(service.get("spec"));
        String jobName = (String) map(job.get("metadata")).get("name");
        String serviceName = (String) map(service.get("metadata")).get("name");

        assertEquals("Indexed", spec.get("completionMode"));
        int nodes = (Integer) spec.get("completions");
        assertEquals(nodes, spec.get("parallelism"));
        assertEquals("Never", pod.get("restartPolicy"), "podFailurePolicy and whole-job restarts need Never");
        assertEquals(0, spec.get("maxFailedIndexes"), "an index out of retries fails the job");
        assertTrue((Integer) spec.get("backoffLimitPerIndex") >= 0);
        assertEquals("Failed", spec.get("podReplacementPolicy"), "never two pods with pod 0's name");

        assertEquals("None", serviceSpec.get("clusterIP"), "headless: one DNS name per pod");
        assertEquals(serviceName, pod.get("subdomain"));
        assertEquals(map(map(map(spec.get("template")).get("metadata")).get("labels")).entrySet()
                .containsAll(map(serviceSpec.get("selector")).entrySet()), true, "the Service selects the pods");
        int servicePort = (Integer) map(list(serviceSpec.get("ports")).get(0)).get("port");

        Map<String, Object> container = map(list(pod.get("containers")).get(0));
        Map<String, Object> env = env(container);
        assertEquals("metadata.annotations['batch.kubernetes.io/job-completion-index']",
                map(map(env.get("JOB_COMPLETION_INDEX")).get("fieldRef")).get("fieldPath"));
        assertEquals("auto", env.get("DTRAIN_RESUME"), "a restarted job resumes from its newest checkpoint");
        List<String> args = strings(container.get("args"));
        assertEquals("launch", args.get(0));
        assertTrue(args.contains("--node-rank=$(JOB_COMPLETION_INDEX)"), args.toString());

        Map<String, Object> limits = map(map(container.get("resources")).get("limits"));
        for (int index = 0; index < nodes; index++) {
            LaunchCommand launch = new LaunchCommand();
            new CommandLine(launch).parseArgs(substitute(args.subList(1, args.size()), index).toArray(String[]::new));
            assertEquals(nodes, launch.nnodes, "--nnodes = completions");
            assertEquals(index, launch.nodeRank, "--node-rank = the completion index");
            assertEquals(jobName + "-0." + serviceName + ":" + servicePort, launch.rdzv,
                    "pod 0's stable name and the Service's port");
            assertEquals(Integer.parseInt(String.valueOf(limits.get("nvidia.com/gpu"))), launch.nprocPerNode,
                    "one worker per GPU");
            assertSecretFileIsTheMountedSecretKey(pod, container, launch.secretFile);
            assertEquals("train", launch.command.get(0));
            TrainCommand train = new TrainCommand();
            new CommandLine(train).parseArgs(launch.command.subList(1, launch.command.size()).toArray(String[]::new));
            assertTrue(Files.isRegularFile(train.config), train.config + " is in the repository, so in the image");
            assertTrue(dockerfile().contains("COPY configs/ configs/") && dockerfile().contains("WORKDIR /opt/dtrain")
                    && "/opt/dtrain".equals(container.get("workingDir")), "configs/ resolves in the image");
            assertTrue(train.overrides.contains("output.dir=/data/runs/gpt2-124m"), train.overrides.toString());
            assertTrue(mountPath(container, claimVolume(pod)).equals("/data"), "output.dir and data are on the PVC");
        }
    }

    @Test
    void devShmIsAMemoryVolumeSizedForTheWorkers() {
        Map<String, Object> pod = map(map(map(byKind.get("Job").get("spec")).get("template")).get("spec"));
        Map<String, Object> container = map(list(pod.get("containers")).get(0));
        String volume = null;
        for (Object m : list(container.get("volumeMounts"))) {
            if ("/dev/shm".equals(map(m).get("mountPath"))) {
                volume = (String) map(m).get("name");
            }
        }
        assertNotNull(volume, "/dev/shm is mounted");
        Map<String, Object> emptyDir = map(volume(pod, volume).get("emptyDir"));
        assertEquals("Memory", emptyDir.get("medium"));
        String size = (String) emptyDir.get("sizeLimit");
        Matcher gi = Pattern.compile("(\\d+)Gi").matcher(size);
        assertTrue(gi.matches(), size);
        int gpus = Integer.parseInt(String.valueOf(map(map(container.get("resources")).get("limits")).get("nvidia.com/gpu")));
        assertTrue(Integer.parseInt(gi.group(1)) >= gpus, "about 1 GiB per worker, got " + size);
    }

    private static void assertSecretFileIsTheMountedSecretKey(Map<String, Object> pod, Map<String, Object> container,
                                                              Path secretFile) {
        String dir = secretFile.getParent().toString();
        String volumeName = null;
        for (Object m : list(container.get("volumeMounts"))) {
            if (dir.equals(map(m).get("mountPath"))) {
                volumeName = (String) map(m).get("name");
            }
        }
        assertNotNull(volumeName, "a volume is mounted at " + dir);
        Map<String, Object> secretVolume = map(volume(pod, volumeName).get("secret"));
        Map<String, Object> secret = byKind.get("Secret");
        assertEquals(map(secret.get("metadata")).get("name"), secretVolume.get("secretName"));
        Map<String, Object> item = map(list(secretVolume.get("items")).get(0));
        assertEquals(secretFile.getFileName().toString(), item.get("path"));
        assertTrue(map(secret.get("stringData")).containsKey((String) item.get("key")),
                "the key " + item.get("key") + " is in the Secret template");
    }

    /** Kubernetes' $(VAR) expansion of the container's arguments, for the pod of {@code index}. */
    private static List<String> substitute(List<String> args, int index) {
        List<String> out = new ArrayList<>();
        for (String a : args) {
            out.add(a.replace("$(JOB_COMPLETION_INDEX)", Integer.toString(index)));
        }
        out.forEach(a -> assertTrue(!a.contains("$("), "unexpanded " + a));
        return out;
    }

    private static String claimVolume(Map<String, Object> pod) {
        for (Object v : list(pod.get("volumes"))) {
            if (map(v).containsKey("persistentVolumeClaim")) {
                assertEquals(map(byKind.get("PersistentVolumeClaim").get("metadata")).get("name"),
                        map(map(v).get("persistentVolumeClaim")).get("claimName"));
                return (String) map(v).get("name");
            }
        }
        throw new AssertionError("no PVC volume");
    }

    private static String mountPath(Map<String, Object> container, String volume) {
        for (Object m : list(container.get("volumeMounts"))) {
            if (volume.equals(map(m).get("name"))) {
                return (String) map(m).get("mountPath");
            }
        }
        throw new AssertionError(volume + " is not mounted");
    }

    private static Map<String, Object> volume(Map<String, Object> pod, String name) {
        for (Object v : list(pod.get("volumes"))) {
            if (name.equals(map(v).get("name"))) {
                return map(v);
            }
        }
        throw new AssertionError("no volume " + name);
    }

    private static Map<String, Object> env(Map<String, Object> container) {
        Map<String, Object> env = new HashMap<>();
        for (Object e : list(container.get("env"))) {
            Map<String, Object> var = map(e);
            env.put((String) var.get("name"), var.containsKey("value") ? var.get("value") : var.get("valueFrom"));
        }
        return env;
    }

    private static String dockerfile() {
        try {
            return Files.readString(DIR.resolve("Dockerfile"));
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    private static Map<String, Object> single(String file) throws IOException {
        List<Object> docs = new ArrayList<>();
        new Load(LoadSettings.builder().build()).loadAllFromString(Files.readString(DIR.resolve(file))).forEach(docs::add);
        assertEquals(1, docs.size(), file);
        return map(docs.get(0));
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> map(Object o) {
        assertTrue(o instanceof Map, "expected a mapping, got " + o);
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    private static List<Object> list(Object o) {
        assertTrue(o instanceof List, "expected a list, got " + o);
        return (List<Object>) o;
    }

    private static List<String> strings(Object o) {
        return list(o).stream().map(String::valueOf).toList();
    }
}
