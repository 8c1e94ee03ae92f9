package dev.baton.tests;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real batond (on the embedded store unless told otherwise), on free loopback ports, for one test class. The binary
 * comes from the system property {@code batond.bin} or the environment variable {@code
 * BATOND_BIN}; without one the tests fail (they never skip).
 */
final class Batond implements AutoCloseable {
  private static final Duration START_TIMEOUT = Duration.ofSeconds(90);

  /** Threads for the consumers that tests run beside their main thread. */
  static final java.util.concurrent.ExecutorService THREADS =
      java.util.concurrent.Executors.newCachedThreadPool(
          r -> {
            Thread t = new Thread(r, "test-consumer");
            t.setDaemon(true);
            return t;
          });

  private final Path binary;
  private final Path dataDir;
  private final Path log;
  private final int grpcPort;
  private final int adminPort;
  private final Map<String, String> env;
  private final List<String> args;
  private Process process;

  private Batond(Path binary, Map<String, String> env, List<String> args) throws IOException {
    this.binary = binary;
    this.env = env;
    this.args = args;
    this.dataDir = Files.createTempDirectory("batond-java-data-");
    this.log = Files.createTempFile("batond-java-", ".log");
    this.grpcPort = freePort();
    this.adminPort = freePort();
  }

  /** Starts a batond and waits until it is ready. */
  static Batond start() {
    return start(Map.of(), List.of());
  }

  /** Starts a batond with extra environment variables and arguments, and waits until it is ready. */
  static Batond start(Map<String, String> env, List<String> args) {
    try {
      Batond b = new Batond(binary(), env, args);
      b.launch();
      return b;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * A batond on the test PostgreSQL (as the serving role, under row-level security: tests use a
   * tenant of their own) that reads from the held-back read replica scripts/test makes ({@code
   * BATON_TEST_READ_REPLICA_URL}): a read the replica serves misses every write made after the
   * replica was.
   */
  static Batond startWithReadReplica() {
    return start(
        Map.of(
            "DATABASE_URL", required("BATON_TEST_APP_DATABASE_URL"),
            "BATON_MIGRATE_DATABASE_URL", required("BATON_TEST_DATABASE_URL"),
            "DATABASE_READ_URL", required("BATON_TEST_READ_REPLICA_URL")),
        List.of("--read-replica-max-lag-ms", "3600000"));
  }

  private static String required(String name) {
    String value = System.getenv().getOrDefault(name, "");
    if (value.isBlank()) {
      fail(name + " is not set: run the suite with scripts/test clients-java, which makes the services");
    }
    return value;
  }

  static Path binary() {
    String bin = System.getProperty("batond.bin", "");
    if (bin.isBlank()) {
      bin = System.getenv().getOrDefault("BATOND_BIN", "");
    }
    if (bin.isBlank()) {
      fail("no batond binary: set BATOND_BIN or -Dbatond.bin (scripts/test clients-java builds it)");
    }
    Path path = Path.of(bin);
    if (!Files.isExecutable(path)) {
      fail("batond binary " + path + " does not exist or is not executable");
    }
    return path;
  }

  /** The gRPC target, {@code 127.0.0.1:port}. */
  String target() {
    return "127.0.0.1:" + grpcPort;
  }

  int grpcPort() {
    return grpcPort;
  }

  /** Stops the server gracefully (SIGTERM: streams end with UNAVAILABLE) and starts it again. */
  void restart() {
    stop();
    launch();
  }

  /** SIGTERM, then waits for the process to exit. */
  void stop() {
    if (process == null) {
      return;
    }
    process.destroy();
    try {
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
    process = null;
  }

  private void launch() {
    List<String> cmd = new ArrayList<>();
    cmd.add(binary.toString());
    cmd.add("--grpc-addr");
    cmd.add("127.0.0.1:" + grpcPort);
    cmd.add("--admin-addr");
    cmd.add("127.0.0.1:" + adminPort);
    cmd.add("--data-dir");
    cmd.add(dataDir.toString());
    cmd.add("--shutdown-grace-secs");
    cmd.add("2");
    cmd.addAll(args);
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().remove("DATABASE_URL");
    pb.environment().remove("REDIS_URL");
    pb.environment().remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    pb.environment().put("RUST_LOG", "warn");
    pb.environment().putAll(env);
    pb.redirectErrorStream(true);
    pb.redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()));
    try {
      process = pb.start();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot start " + binary, e);
    }
    awaitReady();
  }

  private void awaitReady() {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
    HttpRequest ready =
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + adminPort + "/ready"))
            .timeout(Duration.ofSeconds(2))
            .build();
    long end = System.nanoTime() + START_TIMEOUT.toNanos();
    while (System.nanoTime() < end) {
      if (!process.isAlive()) {
        fail("batond exited with " + process.exitValue() + " before it was ready:\n" + logText());
      }
      try {
        if (http.send(ready, HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
          return;
        }
      } catch (IOException e) {
        // Not listening yet.
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        fail("interrupted while waiting for batond");
      }
      sleep(50);
    }
    fail("batond was not ready within " + START_TIMEOUT + ":\n" + logText());
  }

  String logText() {
    try {
      return Files.readString(log);
    } catch (IOException e) {
      return "(cannot read " + log + ": " + e + ")";
    }
  }

  @Override
  public void close() {
    stop();
    deleteTree(dataDir);
    try {
      Files.deleteIfExists(log);
    } catch (IOException ignored) {
      // A temp file left behind is harmless.
    }
  }

  static int freePort() {
    try (ServerSocket s = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())) {
      s.setReuseAddress(true);
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  private static void deleteTree(Path root) {
    if (!Files.exists(root)) {
      return;
    }
    try (Stream<Path> paths = Files.walk(root)) {
      paths.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
    } catch (IOException ignored) {
      // A temp directory left behind is harmless.
    }
  }
}
