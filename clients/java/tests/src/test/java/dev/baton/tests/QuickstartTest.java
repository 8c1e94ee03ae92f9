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
}
