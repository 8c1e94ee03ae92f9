package dev.baton.client;

import io.grpc.Metadata;
import io.opentelemetry.api.GlobalOpenTelemetry;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.propagation.TextMapSetter;

/**
 * Puts the application's OpenTelemetry context (W3C {@code traceparent}, {@code tracestate},
 * {@code baggage}: whatever its global propagators write) into a call's headers, so batond
 * continues the caller's trace. Loaded only when the OpenTelemetry API is on the classpath.
 */
final class TraceContext {
  private static final TextMapSetter<Metadata> SETTER =
      (headers, key, value) -> {
        Metadata.Key<String> k = Metadata.Key.of(key, Metadata.ASCII_STRING_MARSHALLER);
        // An instrumentation agent may have written it already: keep one value.
        if (headers != null && !headers.containsKey(k)) {
          headers.put(k, value);
        }
      };

  private TraceContext() {}

  static void inject(Metadata headers) {
    GlobalOpenTelemetry.getPropagators().getTextMapPropagator().inject(Context.current(), headers, SETTER);
  }
}
