package dev.baton.tests;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP proxy in front of batond that, once armed, lets the next request through and then drops
 * the connection instead of relaying the answer: the first bytes the server sends back after
 * arming are swallowed, and both sockets are closed a moment later, so the server has done the
 * work but the client never hears about it.
 */
final class DropProxy implements AutoCloseable {
  private final ServerSocket listener;
  private final int upstreamPort;
  private final AtomicBoolean armed = new AtomicBoolean();
  private final AtomicInteger drops = new AtomicInteger();
  private final List<Socket> sockets = new CopyOnWriteArrayList<>();
  private final Thread acceptor;

  DropProxy(int upstreamPort) {
    this.upstreamPort = upstreamPort;
    try {
      listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    acceptor = new Thread(this::acceptLoop, "drop-proxy-accept");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  String target() {
    return "127.0.0.1:" + listener.getLocalPort();
  }

  /** The next answer from the server is dropped together with its connection. */
  void armDrop() {
    armed.set(true);
  }

  /** How many connections were dropped before their answer. */
  int drops() {
    return drops.get();
  }

  private void acceptLoop() {
    while (!listener.isClosed()) {
      try {
        Socket client = listener.accept();
        Socket server = new Socket(InetAddress.getLoopbackAddress(), upstreamPort);
        client.setTcpNoDelay(true);
        server.setTcpNoDelay(true);
        sockets.add(client);
        sockets.add(server);
        pump(client, server, false);
        pump(server, client, true);
      } catch (IOException e) {
        // Listener closed, or the upstream refused: the client sees a closed connection.
      }
    }
  }

  private void pump(Socket from, Socket to, boolean answers) {
    Thread t =
        new Thread(
            () -> {
              byte[] buf = new byte[64 * 1024];
              try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
                int n;
                while ((n = in.read(buf)) >= 0) {
                  if (answers && armed.compareAndSet(true, false)) {
                    // The answer to the request just forwarded: swallow it, then cut both ways.
                    drops.incrementAndGet();
                    Batond.sleep(300);
                    closeQuietly(from);
                    closeQuietly(to);
                    return;
                  }
                  out.write(buf, 0, n);
                  out.flush();
                }
              } catch (IOException e) {
                // One side closed; close the other below.
              }
              closeQuietly(from);
              closeQuietly(to);
            },
            answers ? "drop-proxy-down" : "drop-proxy-up");
    t.setDaemon(true);
    t.start();
  }

  private static void closeQuietly(Socket s) {
    try {
      s.close();
    } catch (IOException ignored) {
      // Already closed.
    }
  }

  @Override
  public void close() {
    try {
      listener.close();
    } catch (IOException ignored) {
      // Already closed.
    }
    sockets.forEach(DropProxy::closeQuietly);
  }
}
