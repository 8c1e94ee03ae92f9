package dev.baton.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.baton.examples.Quickstart;
import dev.baton.v1.Handoff;
import dev.baton.v1.HandoffStatus;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** The quickstart runs as written against a real batond, using the packaged client. */
class QuickstartTest {
  @Test
  void theClientComesFromThePackagedJar() throws Exception {
    String location =
        dev.baton.client.BatonClient.class.getProtectionDomain().getCodeSource().getLocation().toURI().getPath();
    assertTrue(location.endsWith("baton-client-0.1.0.jar"), "tests run against the built artifact, not classes: " + location);
  }

  @Test
  void quickstartRuns() throws Exception {
    try (Batond batond = Batond.start()) {
      ByteArrayOutputStream bytes = new ByteArrayOutputStream();
      Handoff done;
      try (PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8)) {
        done = Quickstart.run(batond.target(), out);
      }
      String output = bytes.toString(StandardCharsets.UTF_8);
      assertEquals(HandoffStatus.HANDOFF_STATUS_COMPLETED, done.getStatus(), output);
      assertTrue(output.contains("appended seqs 1..3"), output);
      assertTrue(output.contains("followed #3 planner"), output);
      assertTrue(output.contains("coder's inbox: HANDOFF_EVENT_TYPE_CREATED"), output);
      assertTrue(output.contains("accepted: HANDOFF_STATUS_ACCEPTED"), output);
      assertTrue(output.contains("context #0 ENTRY_KIND_SUMMARY"), output);
      assertTrue(output.contains("context #3 ENTRY_KIND_TOOL_CALL"), output);
    }
  }

  /**
   * The quickstart's main, as a program of its own in a JVM whose classpath is the client's
   * runtime dependencies (no OpenTelemetry, which the client uses only when present).
   */
  @Test
  void quickstartMainRunsWithoutOptionalDependencies() throws Exception {
    String classpath =
        java.util.Arrays.stream(System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")).split(java.io.File.pathSeparator))
            .filter(p -> !p.contains("opentelemetry") && !p.contains("junit") && !p.contains("test-classes"))
            .collect(java.util.stream.Collectors.joining(java.io.File.pathSeparator));
    assertTrue(classpath.contains("baton-client-examples"), "the examples jar is on the classpath: " + classpath);
    try (Batond batond = Batond.start()) {
      Process p =
          new ProcessBuilder(
                  java.nio.file.Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                  "-cp",
                  classpath,
                  "dev.baton.examples.Quickstart",
                  batond.target())
              .redirectErrorStream(true)
              .start();
      String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS), output);
      assertEquals(0, p.exitValue(), output);
      assertTrue(output.contains("handoff HANDOFF_STATUS_COMPLETED"), output);
    }
  }
}
