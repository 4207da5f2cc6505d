package ims

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Error is an IMS answer that was not a token: a non-200 status, with the
// IMS error code and description when the body carried them (spec §3). It
// never holds the request, so it never contains the JWT, the client secret
// or a token.
type Error struct {
	StatusCode int
	// Code is the IMS "error" field, e.g. "invalid_client"; empty if none.
	Code string
	// Description is the IMS "error_description", from the server: printed
	// only after control characters are removed and its length capped.
	Description string
	// RetryAfter is the server's Retry-After, or 0.
	RetryAfter time.Duration

	// clientCredentials marks an answer to the OAuth client-credentials
	// grant (spec §4) rather than the JWT exchange: the hints differ.
	clientCredentials bool
}

const (
	maxDescriptionRunes = 300
	maxCodeRunes        = 64
)

// Error reads like "ims: 401 invalid_client: <description> (hint)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("ims: ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	code := sanitize(e.Code, maxCodeRunes)
	switch {
	case code != "":
		b.WriteString(" ")
		b.WriteString(code)
	case http.StatusText(e.StatusCode) != "":
		b.WriteString(" ")
		b.WriteString(http.StatusText(e.StatusCode))
	}
	if d := sanitize(e.Description, maxDescriptionRunes); d != "" {
		b.WriteString(": ")
		b.WriteString(d)
	}
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after ")
		b.WriteString(e.RetryAfter.String())
		b.WriteString(")")
	}
	if h := e.hint(); h != "" {
		b.WriteString(" (")
		b.WriteString(h)
		b.WriteString(")")
	}
	return b.String()
}

// hint tells a person what to check for the common failures.
func (e *Error) hint() string {
	if e.clientCredentials {
		switch e.Code {
		case "invalid_client":
			if e.StatusCode == http.StatusUnauthorized {
				return "check client_id and client_secret of the OAuth server-to-server credential"
			}
			return "IMS does not know this client: check client_id of the OAuth server-to-server credential, or whether it was deleted"
		case "invalid_scope":
			return "the scopes in the credentials file are not all granted to this OAuth credential; compare them with the Adobe Developer Console"
		}
	}
	switch e.Code {
	case "invalid_client":
		if e.StatusCode == http.StatusUnauthorized {
			return "check technicalAccount.clientId and clientSecret in the service credentials"
		}
		return "IMS does not know this client or the JWT audience does not match it: check technicalAccount.clientId and imsEndpoint, or whether the integration was deleted"
	case "invalid_signature":
		return "IMS could not verify the JWT: the private key does not belong to the certificate registered for this integration; download the service credentials again"
	case "invalid_scope":
		return "the metascopes in the credentials are not all bound to the integration"
	case "invalid_token":
		return "IMS rejected the JWT as expired or malformed: check this machine's clock"
	case "bad_request":
		return "check org and id in the service credentials"
	case "unauthorized_client":
		return "this client may not use this grant type"
	}
	switch {
	case e.StatusCode == http.StatusTooManyRequests:
		return "IMS is throttling this client"
	case e.StatusCode >= 300 && e.StatusCode < 400:
		return "IMS answered with a redirect: check the IMS URL"
	case e.StatusCode == http.StatusNotFound:
		return "no token endpoint at this address: check the IMS URL"
	}
	return ""
}

// Temporary reports whether retrying later may succeed: throttling (429),
// request timeout (408) and server errors (5xx). Other answers mean the
// credentials or the request are wrong and retrying will not help.
func (e *Error) Temporary() bool {
	return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// IsPermanent reports whether err is an IMS answer that retrying will not
// change (a bad client, signature, scope or request). Network errors,
// timeouts, throttling, server errors and undecodable responses are not
// permanent.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && !e.Temporary()
}

// retryAfterOf returns the Retry-After carried by an *Error in err, or 0.
func retryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// sanitize makes server-supplied text safe to print on one line: control
// characters and runs of white space become one space, invisible format
// characters (such as bidi overrides) are dropped, and the result is cut to
// at most n runes.
func sanitize(s string, n int) string {
	var b strings.Builder
	space := false
	runes := 0
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar:
			continue
		case unicode.IsControl(r) || unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			if runes++; runes > n {
				break
			}
			b.WriteByte(' ')
			space = false
		}
		if runes++; runes > n {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
