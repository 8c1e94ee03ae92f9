package dev.baton.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;

/**
 * Adds the tenant and API key headers to every call, and the application's W3C trace context when
 * it uses OpenTelemetry.
 */
final class HeadersInterceptor implements ClientInterceptor {
  static final Metadata.Key<String> TENANT =
      Metadata.Key.of("x-baton-tenant", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  /** Whether the OpenTelemetry API is on the classpath; {@link TraceContext} needs it. */
  private static final boolean OPENTELEMETRY = present("io.opentelemetry.api.GlobalOpenTelemetry");

  private final String tenant;
  private final String bearer;

  HeadersInterceptor(String tenant, String apiKey) {
    this.tenant = tenant;
    this.bearer = apiKey == null ? null : "Bearer " + apiKey;
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
        if (OPENTELEMETRY) {
          TraceContext.inject(headers);
        }
        super.start(responseListener, headers);
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
