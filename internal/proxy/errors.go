package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/aemproxy/aemproxy/internal/guard"
)

// statusClientClosed is logged and counted when the client went away
// before its response was complete (nginx's convention); it is never sent.
const statusClientClosed = 499

// rejection is a request the proxy refuses before routing it.
type rejection struct {
	status     int
	reason     string // error code in the response, and the rejected_requests_total label
	message    string
	retryAfter time.Duration
	challenge  string // WWW-Authenticate, on a 401
}

func (r *rejection) Error() string { return r.message }

// denied is the rejection for a route guard's Denial.
func denied(d *guard.Denial) *rejection {
	return &rejection{status: d.Status, reason: d.Reason, message: d.Message, challenge: d.Challenge}
}

var (
	errConnect = &rejection{status: http.StatusMethodNotAllowed, reason: "method_not_allowed",
		message: "CONNECT is not supported: aemproxy is a reverse proxy for AEM, not a forward proxy"}
	errForeignTarget = &rejection{status: http.StatusMisdirectedRequest, reason: "foreign_target",
		message: "the request target names another host: aemproxy is a reverse proxy for AEM, not a forward proxy; send origin-form requests (GET /path)"}
	errBadTarget = &rejection{status: http.StatusBadRequest, reason: "bad_target",
		message: "the request target must be a path starting with /"}
	errUncleanPath = &rejection{status: http.StatusBadRequest, reason: "unclean_path",
		message: "the path has an empty, \".\" or \"..\" segment; send the path in its clean form"}
	errNoRoute = &rejection{status: http.StatusNotFound, reason: "no_route",
		message: "no route of this proxy serves this host and path; check the URL against the proxy's configured routes"}
)

// tokenError is a failure to get the route's IMS access token. Token
// sources write their errors to be shown: they explain and hold no secret.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "get IMS access token: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

var errEmptyToken = errors.New("token source returned an empty token")

// bodyError is a failure to read the client's request body.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// retryAfterer is implemented by token source errors that know when trying
// again makes sense (IMS throttling, an outage with backoff).
type retryAfterer interface {
	RetryAfter() time.Duration
}

// failure is how an error is shown to the client.
type failure struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
	challenge  string
}

// classify maps an error met while serving a request to what the client is
// told. It is the one place that decides statuses; the caller has already
// ruled out that the client went away.
func classify(err error) failure {
	var (
		rej *rejection
		big *http.MaxBytesError
		tok *tokenError
		bod *bodyError
		ra  retryAfterer
		ne  net.Error
	)
	switch {
	case errors.As(err, &rej):
		return failure{status: rej.status, code: rej.reason, message: rej.message, retryAfter: rej.retryAfter, challenge: rej.challenge}
	case errors.As(err, &big):
		// Read past the route's MaxBodyBytes (a body without
		// Content-Length), by the proxy or by the transport.
		return failure{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
			message: "the request body is larger than this route's limit of " + strconv.FormatInt(big.Limit, 10) + " bytes"}
	case errors.As(err, &tok):
		f := failure{status: http.StatusServiceUnavailable, code: "token_unavailable",
			message: "cannot get an IMS access token for AEM: " + tok.err.Error()}
		if errors.As(tok.err, &ra) {
			f.retryAfter = ra.RetryAfter()
		}
		return f
	case errors.As(err, &bod):
		return failure{status: http.StatusBadRequest, code: "bad_request_body",
			message: "could not read the request body: " + bod.err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return failure{status: http.StatusGatewayTimeout, code: "upstream_timeout",
			message: "AEM did not answer in time; try again later, or raise the route's response header timeout for slow requests"}
	}
	// A *url.Error would repeat the request URL, query string included.
	return failure{status: http.StatusBadGateway, code: "upstream_unreachable",
		message: "could not get a response from AEM: " + unwrapURLError(err).Error()}
}

type errorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	Route     string `json:"route,omitempty"`
	RequestID string `json:"request_id"`
}

// writeError sends f as a short JSON document.
func writeError(w http.ResponseWriter, f failure, route, requestID string) {
	b, err := json.Marshal(errorBody{Error: f.code, Message: f.message, Route: route, RequestID: requestID})
	if err != nil { // cannot happen with string fields; keep the status anyway
		b = []byte(`{"error":"internal"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Cache-Control"] = []string{"no-store"}
	h["X-Request-Id"] = []string{requestID}
	if f.challenge != "" {
		h["Www-Authenticate"] = []string{f.challenge}
	}
	if f.retryAfter > 0 {
		h["Retry-After"] = []string{strconv.FormatInt(int64(math.Ceil(f.retryAfter.Seconds())), 10)}
	}
	w.WriteHeader(f.status)
	_, _ = w.Write(b)
}
