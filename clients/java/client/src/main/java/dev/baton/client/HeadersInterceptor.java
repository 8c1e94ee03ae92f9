package dev.baton.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Adds the tenant and API key headers to every call, and the application's W3C trace context when
 * it uses OpenTelemetry; and keeps the client's log position for read-your-writes: the highest
 * {@code baton-lsn} response header any call was answered with, sent back as {@code
 * baton-min-lsn} on every call. A client and its views share one interceptor, so they share the
 * position.
 */
final class HeadersInterceptor implements ClientInterceptor {
  static final Metadata.Key<String> TENANT =
      Metadata.Key.of("x-baton-tenant", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  /** Whether the OpenTelemetry API is on the classpath; {@link TraceContext} needs it. */
  private static final boolean OPENTELEMETRY = present("io.opentelemetry.api.GlobalOpenTelemetry");

  static final Metadata.Key<String> LSN =
      Metadata.Key.of(BatonClient.LSN_HEADER, Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> MIN_LSN =
      Metadata.Key.of(BatonClient.MIN_LSN_HEADER, Metadata.ASCII_STRING_MARSHALLER);

  private final String tenant;
  private final String bearer;
  /** 16 upper-case hexadecimal digits (the higher position is the greater string), or null. */
  private final AtomicReference<String> position;

  HeadersInterceptor(String tenant, String apiKey, String position) {
    this.tenant = tenant;
    this.bearer = apiKey == null ? null : "Bearer " + apiKey;
    this.position = new AtomicReference<>(position);
  }

  /** The highest log position the server has told this client of, or null. */
  String position() {
    return position.get();
  }

  /**
   * A log position in its 16-digit upper-case form.
   *
   * @return the position, or null when {@code text} is not 1 to 16 hexadecimal digits
   */
  static String normalizePosition(String text) {
    if (text == null || text.isEmpty() || text.length() > 16) {
      return null;
    }
    for (int i = 0; i < text.length(); i++) {
      if (Character.digit(text.charAt(i), 16) < 0) {
        return null;
      }
    }
    return "0".repeat(16 - text.length()) + text.toUpperCase(Locale.ROOT);
  }

  private void note(Metadata headers) {
    String told = normalizePosition(headers.get(LSN));
    if (told != null) {
      position.accumulateAndGet(told, (a, b) -> a == null || b.compareTo(a) > 0 ? b : a);
    }
  }

  @Override
  public <ReqT, RespT> ClientCall<ReqT, RespT> interceptCall(
      MethodDescriptor<ReqT, RespT> method, CallOptions callOptions, Channel next) {
    return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, callOptions)) {
      @Override
      public void start(Listener<RespT> responseListener, Metadata headers) {
        if (tenant != null) {
          headers.put(TENANT, tenant);
        }
        if (bearer != null) {
          headers.put(AUTHORIZATION, bearer);
        }
        String at = position.get();
        if (at != null && !headers.containsKey(MIN_LSN)) {
          headers.put(MIN_LSN, at);
        }
        if (OPENTELEMETRY) {
          TraceContext.inject(headers);
        }
        super.start(
            new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(responseListener) {
              @Override
              public void onHeaders(Metadata responseHeaders) {
                note(responseHeaders);
                super.onHeaders(responseHeaders);
              }
            },
            headers);
      }
    };
  }

  private static boolean present(String className) {
    try {
      Class.forName(className, false, HeadersInterceptor.class.getClassLoader());
      return true;
    } catch (ClassNotFoundException | LinkageError e) {
      return false;
    }
  }
}
