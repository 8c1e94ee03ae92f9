package dev.baton.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.io.Serializable;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * The one exception every {@link BatonClient} call throws when Baton (or the connection to it)
 * reports an error.
 *
 * <p>It carries the canonical gRPC code name ({@code "NOT_FOUND"}, {@code "INVALID_ARGUMENT"},
 * {@code "FAILED_PRECONDITION"}, ...), the server's message, and, for {@code INVALID_ARGUMENT},
 * every bad field of the request as a {@link FieldViolation}:
 *
 * <pre>{@code
 * try {
 *   client.appendEntries(request);
 * } catch (BatonException e) {
 *   if (e.code().equals("INVALID_ARGUMENT")) {
 *     for (BatonException.FieldViolation v : e.fieldViolations()) {
 *       System.err.println(v.field() + ": " + v.description());
 *     }
 *   }
 * }
 * }</pre>
 *
 * <p>The exception is unchecked: Baton's errors are answers about the request (a missing
 * session, a bad field), which the caller handles where it makes sense rather than at every
 * call.
 */
public class BatonException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final String code;
  private final List<FieldViolation> fieldViolations;
  private final Duration retryDelay;
  private final com.google.rpc.Status rpcStatus;

  /**
   * One invalid field of a request, from the {@code google.rpc.BadRequest} detail of an
   * {@code INVALID_ARGUMENT} error.
   *
   * @param field the path of the field in the request, e.g. {@code "entries[0].author"}
   * @param description why the value is invalid
   */
  public record FieldViolation(String field, String description) implements Serializable {
    /**
     * Checks that neither part is null.
     *
     * @param field the path of the field in the request
     * @param description why the value is invalid
     */
    public FieldViolation {
      Objects.requireNonNull(field, "field");
      Objects.requireNonNull(description, "description");
    }
  }

  /**
   * Creates an exception from its parts; the client builds these from gRPC statuses, and
   * applications may create them too (e.g. in fakes of their own).
   *
   * @param code the canonical gRPC code name, e.g. {@code "NOT_FOUND"}
   * @param message the error message
   * @param fieldViolations the invalid fields, empty unless the code is
   *     {@code INVALID_ARGUMENT}
   * @param cause the underlying exception, or null
   */
  public BatonException(
      String code, String message, List<FieldViolation> fieldViolations, Throwable cause) {
    this(code, message, fieldViolations, null, com.google.rpc.Status.getDefaultInstance(), cause);
  }

  private BatonException(
      String code,
      String message,
      List<FieldViolation> fieldViolations,
      Duration retryDelay,
      com.google.rpc.Status rpcStatus,
      Throwable cause) {
    super(message, cause);
    this.code = Objects.requireNonNull(code, "code");
    this.fieldViolations = List.copyOf(fieldViolations);
    this.retryDelay = retryDelay;
    this.rpcStatus = rpcStatus;
  }

  /**
   * Converts a gRPC failure, reading the {@code google.rpc.Status} details the server attached
   * ({@code BadRequest} field violations, {@code RetryInfo}).
   *
   * @param e the failure of a gRPC call
   * @return the exception to throw to the application
   */
  static BatonException from(StatusRuntimeException e) {
    Status status = e.getStatus();
    com.google.rpc.Status rpcStatus = StatusProto.fromThrowable(e);
    if (rpcStatus == null) {
      rpcStatus = com.google.rpc.Status.getDefaultInstance();
    }
    List<FieldViolation> violations = new ArrayList<>();
    Duration retryDelay = null;
    for (Any detail : rpcStatus.getDetailsList()) {
      try {
        if (detail.is(BadRequest.class)) {
          for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
            violations.add(new FieldViolation(v.getField(), v.getDescription()));
          }
        } else if (detail.is(RetryInfo.class)) {
          RetryInfo info = detail.unpack(RetryInfo.class);
          if (info.hasRetryDelay()) {
            retryDelay =
                Duration.ofSeconds(info.getRetryDelay().getSeconds(), info.getRetryDelay().getNanos());
          }
        }
      } catch (InvalidProtocolBufferException ignored) {
        // A detail that does not parse is left out; the code and message still stand.
      }
    }
    String message = status.getDescription();
    if (message == null || message.isEmpty()) {
      message = status.getCause() != null ? status.getCause().toString() : status.getCode().name();
    }
    return new BatonException(status.getCode().name(), message, violations, retryDelay, rpcStatus, e);
  }

  /**
   * The canonical gRPC status code name: {@code "NOT_FOUND"}, {@code "INVALID_ARGUMENT"},
   * {@code "ALREADY_EXISTS"}, {@code "FAILED_PRECONDITION"}, {@code "PERMISSION_DENIED"},
   * {@code "UNAUTHENTICATED"}, {@code "UNAVAILABLE"}, {@code "DEADLINE_EXCEEDED"}, ...
   *
   * @return the code name, never null
   */
  public String code() {
    return code;
  }

  /**
   * The invalid fields of the request (empty unless {@link #code()} is
   * {@code "INVALID_ARGUMENT"}), in the order the server listed them.
   *
   * @return an unmodifiable list
   */
  public List<FieldViolation> fieldViolations() {
    return fieldViolations;
  }

  /**
   * How long the server asked the client to wait before retrying ({@code google.rpc.RetryInfo}),
   * when it said so.
   *
   * @return the delay, or empty
   */
  public Optional<Duration> retryDelay() {
    return Optional.ofNullable(retryDelay);
  }

  /**
   * The full {@code google.rpc.Status} the server sent, for details beyond the field violations
   * (e.g. {@code ResourceInfo} with NOT_FOUND, {@code PreconditionFailure} with
   * FAILED_PRECONDITION). The default instance when the error carried no details.
   *
   * @return the status with its details, never null
   */
  public com.google.rpc.Status rpcStatus() {
    return rpcStatus;
  }

  /**
   * The code and the message, e.g. {@code BatonException: NOT_FOUND: session "s1" not found}.
   *
   * @return a one-line description
   */
  @Override
  public String toString() {
    return getClass().getName() + ": " + code + ": " + getMessage();
  }
}
