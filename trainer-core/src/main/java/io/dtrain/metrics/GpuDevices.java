package io.dtrain.metrics;

import io.dtrain.common.UserFacingException;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * Which GPUs a node has and which one each worker uses, for ND4J's CUDA backend (nothing of this runs on the CPU
 * backend). Discovery runs {@code nvidia-smi --query-gpu=index,name,memory.total,compute_cap --format=csv,noheader}
 * from PATH; {@code dtrain launch} gives local rank r the r-th GPU through {@code CUDA_VISIBLE_DEVICES} (the r-th
 * entry of the user's own {@code CUDA_VISIBLE_DEVICES} list when one is set), with {@code CUDA_DEVICE_ORDER=PCI_BUS_ID}
 * so CUDA numbers GPUs as nvidia-smi does; each worker then sees one GPU, logs it and records it in its step
 * records. A GPU outside the compute capabilities ND4J 1.0.0-M2.1's CUDA 11.6 build supports is refused.
 */
public final class GpuDevices {
    /** The query, and its output columns in this order. */
    public static final String QUERY = "index,name,memory.total,compute_cap";
    /** Compute capabilities the CUDA 11.6 build of ND4J 1.0.0-M2.1 runs on: Kepler (3.5) to Ampere (8.6). */
    public static final double MIN_COMPUTE_CAPABILITY = 3.5;
    public static final double MAX_COMPUTE_CAPABILITY = 8.6;

    /** One GPU as nvidia-smi lists it. */
    public record Gpu(int index, String name, long memoryMib, String computeCapability) {
        public String describe() {
            return String.format(Locale.ROOT, "GPU %d %s, %.1f GiB, compute capability %s", index, name,
                    memoryMib / 1024.0, computeCapability);
        }
    }

    private GpuDevices() {
    }

    /** ND4J's CUDA backend is on the class path (the {@code cuda} Maven profile's build); checked without loading it. */
    public static boolean cudaBackend() {
        try {
            Class.forName("org.nd4j.linalg.jcublas.JCublasBackend", false, GpuDevices.class.getClassLoader());
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }

    /** The GPUs nvidia-smi on {@code env}'s PATH lists; refused with the reason when there is none or it fails. */
    public static List<Gpu> discover(Map<String, String> env) {
        Path smi = NvidiaSmi.find(env.get("PATH")).orElseThrow(() -> new UserFacingException("the CUDA backend needs"
                + " nvidia-smi on PATH to find this node's GPUs (it comes with the NVIDIA driver): install the driver,"
                + " or add its directory to PATH"));
        List<String> lines = new ArrayList<>();
        String output;
        int exit;
        try {
            Process p = new ProcessBuilder(smi.toString(), "--query-gpu=" + QUERY, "--format=csv,noheader")
                    .redirectErrorStream(true).start();
            try (InputStream in = p.getInputStream()) {
                output = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            }
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new UserFacingException(smi + " did not answer within 30 s; check the NVIDIA driver (nvidia-smi)");
            }
            exit = p.exitValue();
        } catch (IOException e) {
            throw new UserFacingException("cannot run " + smi + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new UserFacingException("interrupted while running " + smi, e);
        }
        if (exit != 0) {
            throw new UserFacingException(smi + " failed (exit code " + exit + "): " + output.strip().replace('\n', ' ')
                    + "; check the NVIDIA driver");
        }
        lines.addAll(output.lines().filter(l -> !l.isBlank()).toList());
        return parse(lines);
    }

    /** "0, Tesla V100-SXM2-16GB, 16160 MiB, 7.0" lines (units or none). */
    static List<Gpu> parse(List<String> lines) {
        List<Gpu> out = new ArrayList<>();
        for (String line : lines) {
            List<String> c = Arrays.stream(line.split(",")).map(String::strip).toList();
            if (c.size() != 4) {
                throw new UserFacingException("unexpected nvidia-smi output line '" + line + "' for --query-gpu=" + QUERY
                        + " (an old driver without compute_cap? it needs driver 510 or newer)");
            }
            try {
                out.add(new Gpu(Integer.parseInt(c.get(0)), c.get(1),
                        Math.round(NvidiaSmi.Parser.number(c.get(2))), c.get(3)));
            } catch (NumberFormatException e) {
                throw new UserFacingException("unexpected nvidia-smi output line '" + line + "': " + e.getMessage());
            }
        }
        return out;
    }

    /** Refuses a GPU the CUDA 11.6 backend cannot run on, saying why. */
    public static void checkSupported(Gpu gpu) {
        double cc;
        try {
            cc = Double.parseDouble(gpu.computeCapability());
        } catch (NumberFormatException e) {
            return;   // "[N/A]": nothing to hold against it
        }
        if (cc < MIN_COMPUTE_CAPABILITY || cc > MAX_COMPUTE_CAPABILITY) {
            throw new UserFacingException(gpu.describe() + " is not supported: ND4J 1.0.0-M2.1's CUDA 11.6 backend runs"
                    + " on compute capability " + MIN_COMPUTE_CAPABILITY + " to " + MAX_COMPUTE_CAPABILITY
                    + (cc > MAX_COMPUTE_CAPABILITY ? " (CUDA 11.6 predates this GPU's architecture)" : "")
                    + "; use V100/A100-class GPUs (p3/p4 instances), or train on the CPU backend");
        }
    }

    /**
     * The {@code CUDA_VISIBLE_DEVICES} value of each of {@code nproc} workers on this node: one GPU each, taken in
     * order from the user's {@code CUDA_VISIBLE_DEVICES} list when {@code env} has one, else from nvidia-smi's
     * GPUs. Refuses more workers than GPUs, a listed GPU nvidia-smi does not show, and unsupported GPUs.
     */
    public static List<String> placement(int nproc, Map<String, String> env) {
        List<Gpu> gpus = discover(env);
        String user = env.get("CUDA_VISIBLE_DEVICES");
        boolean userList = user != null && !user.isBlank();
        List<String> visible = userList
                ? Arrays.stream(user.split(",")).map(String::strip).filter(s -> !s.isEmpty()).toList()
                : gpus.stream().map(g -> Integer.toString(g.index())).toList();
        if (nproc > visible.size()) {
            throw new UserFacingException("--nproc-per-node " + nproc + " but " + (userList
                    ? "CUDA_VISIBLE_DEVICES=" + user + " lists " + visible.size() + " GPU(s)"
                    : "this node has " + visible.size() + " GPU(s) (nvidia-smi)") + ": dtrain runs one worker per GPU;"
                    + " use --nproc-per-node " + visible.size() + (visible.isEmpty() ? "" : " or less"));
        }
        List<String> out = new ArrayList<>();
        for (int r = 0; r < nproc; r++) {
            String id = visible.get(r);
            find(gpus, id).ifPresentOrElse(GpuDevices::checkSupported, () -> {
                if (id.matches("\\d+")) {
                    throw new UserFacingException("CUDA_VISIBLE_DEVICES=" + user + " names GPU " + id
                            + ", which nvidia-smi does not list (GPUs " + gpus.stream().map(g -> Integer.toString(g.index()))
                            .reduce((a, b) -> a + "," + b).orElse("none") + ")");
                }
            });
            out.add(id);
        }
        return out;
    }

    /** The GPU this process uses: the first of its {@code CUDA_VISIBLE_DEVICES} (all GPUs: GPU 0), checked. */
    public static Gpu ofThisProcess(Map<String, String> env) {
        List<Gpu> gpus = discover(env);
        String user = env.get("CUDA_VISIBLE_DEVICES");
        String id = user == null || user.isBlank() ? "0" : user.split(",")[0].strip();
        Gpu gpu = find(gpus, id).orElseThrow(() -> new UserFacingException("CUDA_VISIBLE_DEVICES=" + user
                + " names GPU " + id + ", which nvidia-smi does not list"));
        checkSupported(gpu);
        return gpu;
    }

    private static Optional<Gpu> find(List<Gpu> gpus, String id) {
        return gpus.stream().filter(g -> Integer.toString(g.index()).equals(id)).findFirst();
    }

    /**
     * What this process computes on, for its log and step records: "cpu", or the GPU's description (checked
     * against the backend's supported compute capabilities).
     */
    public static String deviceOfThisProcess(boolean cuda, Map<String, String> env) {
        return cuda ? ofThisProcess(env).describe() : "cpu";
    }
}
