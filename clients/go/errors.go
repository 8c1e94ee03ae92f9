package baton

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is the one error type of the client: every call that fails returns an *Error (use
// errors.As to get it). It carries the canonical gRPC code name, the server's message and the
// details Baton attaches to its statuses.
type Error struct {
	// Code is the canonical name of the gRPC status code: "NOT_FOUND", "INVALID_ARGUMENT",
	// "UNAVAILABLE", "DEADLINE_EXCEEDED", ...
	Code string
	// Message is the status message.
	Message string
	// FieldViolations are the fields of the request that were invalid, from a
	// google.rpc.BadRequest detail (INVALID_ARGUMENT); nil otherwise.
	FieldViolations []FieldViolation
	// RetryDelay is the delay the server asked for in a google.rpc.RetryInfo detail; zero when
	// it sent none.
	RetryDelay time.Duration

	status *status.Status
}

// FieldViolation is one invalid field of a request: a google.rpc.BadRequest.FieldViolation.
type FieldViolation struct {
	// Field is the path of the field, e.g. "entries[1].author".
	Field string
	// Description says what is wrong with it.
	Description string
}

// Error formats the error as "baton: CODE: message".
func (e *Error) Error() string {
	s := "baton: " + e.Code + ": " + e.Message
	for i, v := range e.FieldViolations {
		if i == 0 {
			s += " ("
		} else {
			s += "; "
		}
		s += v.Field + ": " + v.Description
		if i == len(e.FieldViolations)-1 {
			s += ")"
		}
	}
	return s
}

// GRPCStatus returns the underlying gRPC status, so status.FromError and status.Code work on
// an *Error too.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// GRPCCode returns the gRPC status code.
func (e *Error) GRPCCode() codes.Code { return e.status.Code() }

// Details returns the decoded details of the status (google.rpc.BadRequest, RetryInfo,
// ResourceInfo, PreconditionFailure, ...), as errdetails messages.
func (e *Error) Details() []any { return e.status.Details() }

// Is reports whether a DEADLINE_EXCEEDED or CANCELLED error matches context.DeadlineExceeded
// or context.Canceled, so errors.Is(err, context.DeadlineExceeded) works.
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.status.Code() == codes.DeadlineExceeded
	case context.Canceled:
		return e.status.Code() == codes.Canceled
	}
	return false
}

var codeNames = [...]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

// CodeName returns the canonical name of a gRPC code ("NOT_FOUND" for codes.NotFound).
func CodeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("CODE(%d)", uint32(c))
}

// asError turns any error of a call into an *Error: gRPC statuses keep their code and
// details, context errors become CANCELLED / DEADLINE_EXCEEDED, anything else UNKNOWN.
// nil and io.EOF pass through unchanged.
func asError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var be *Error
	if errors.As(err, &be) {
		return be
	}
	var st *status.Status
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		st = status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		st = status.New(codes.Canceled, err.Error())
	default:
		st = status.Convert(err)
	}
	return fromStatus(st)
}

func fromStatus(st *status.Status) *Error {
	e := &Error{Code: CodeName(st.Code()), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			if d.GetRetryDelay() != nil {
				e.RetryDelay = d.GetRetryDelay().AsDuration()
			}
		}
	}
	return e
}
