package ims

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"
)

// farFuture is the ExpiresAt of credentials that do not expire by
// themselves: HTTP Basic, and a development token whose expiry cannot be
// read.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

const (
	// minBearerLen rejects words that cannot be an IMS access token (real
	// ones are JWTs of about 1 KiB) so that a stray file is not taken for one.
	minBearerLen = 16
	maxBearerLen = 64 << 10
	// getDevTokenHowTo is where the AEM Developer Console hands out local
	// development tokens (spec §1).
	getDevTokenHowTo = "get a new one in the AEM Developer Console (Integrations → Local token → Get Local Development Token)"
)

// ParseDevToken returns the access token in a local development token file:
// the AEM Developer Console's JSON with an accessToken field, or a file
// holding just the token (optionally prefixed "Bearer "). The token must be
// one word of the characters a bearer token may hold (RFC 6750). No error
// contains the token or other file content.
func ParseDevToken(data []byte) (string, error) {
	data = trimFile(data)
	switch {
	case len(data) == 0:
		return "", &FieldError{Problem: "empty file"}
	case data[0] == '{':
		top, err := jsonObject(data)
		if err != nil {
			return "", err
		}
		raw, ok := top["accessToken"]
		if !ok || isNull(raw) {
			return "", &FieldError{Field: "accessToken", Problem: "missing (a local development token from the AEM Developer Console has one)"}
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", &FieldError{Field: "accessToken", Problem: "not a string"}
		}
		tok, problem := cleanBearerToken(s)
		if problem != "" {
			return "", &FieldError{Field: "accessToken", Problem: problem}
		}
		return tok, nil
	case data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return "", describeJSONError(data, err)
		}
		data = []byte(s)
	}
	tok, problem := cleanBearerToken(string(data))
	if problem != "" {
		return "", &FieldError{Problem: problem}
	}
	return tok, nil
}

// trimFile drops a UTF-8 byte order mark and surrounding white space.
func trimFile(data []byte) []byte {
	return bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(data), []byte("\xef\xbb\xbf")))
}

// cleanBearerToken trims s and an optional "Bearer " prefix and checks that
// the rest can be a bearer token. problem never quotes s.
func cleanBearerToken(s string) (token, problem string) {
	s = strings.TrimSpace(s)
	if len(s) > len("bearer ") && strings.EqualFold(s[:len("bearer ")], "bearer ") {
		s = strings.TrimSpace(s[len("bearer "):])
	}
	switch {
	case s == "":
		return "", "empty"
	case strings.ContainsAny(s, " \t\r\n\v\f"):
		return "", "holds more than one word; a token file must hold the access token and nothing else"
	case len(s) < minBearerLen:
		return "", "too short to be an IMS access token"
	case len(s) > maxBearerLen:
		return "", "longer than 64 KiB: not an IMS access token"
	case !isBearerToken(s):
		return "", "contains characters an access token cannot hold (want letters, digits and -._~+/=)"
	}
	return s, ""
}

// isBearerToken reports whether s is made of RFC 6750 b64token characters.
// IMS tokens are JWTs, a subset.
func isBearerToken(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=':
		default:
			return false
		}
	}
	return true
}

// DevToken is a TokenSource that hands out one local development token (an
// IMS access token a developer got from the AEM Developer Console) as is. It
// never contacts IMS.
//
// Its expiry is read from the token's own created_at and expires_in (spec
// §2). Until then Token returns it without locks or allocation; after, Token
// returns an *UnavailableError wrapping a *DevTokenError that says how to get
// a new one. A token whose expiry cannot be read is used until AEM rejects
// it: the first Invalidate for it marks it rejected, and Token fails from
// then on. A DevToken is safe for concurrent use.
type DevToken struct {
	tok Token
	// expiryKnown is false when the token does not say when it expires;
	// tok.ExpiresAt is then farFuture.
	expiryKnown bool
	origin      string
	// reloadable: origin is a file a Provider watches.
	reloadable bool
	route      string
	now        func() time.Time
	rejected   atomic.Bool
}

// NewDevToken returns a DevToken for token (optionally prefixed "Bearer ").
// origin says where the token came from, for messages: a file path, or an
// environment variable such as "AEMPROXY_TOKEN". now is the clock; nil means
// time.Now. An expired token is accepted: Token then fails with the how-to.
func NewDevToken(token string, origin string, now func() time.Time) (*DevToken, error) {
	t, problem := cleanBearerToken(token)
	if problem != "" {
		return nil, &FieldError{Field: "local development token from " + origin, Problem: problem}
	}
	if now == nil {
		now = time.Now
	}
	d := &DevToken{tok: Token{AccessToken: t, ExpiresAt: farFuture}, origin: origin, now: now}
	if createdAt, ms, ok := accessTokenTimes(t); ok && ms > 0 && ms <= int64(maxTokenLifetime/time.Millisecond) {
		d.tok.IssuedAt = createdAt
		d.tok.ExpiresAt = createdAt.Add(time.Duration(ms) * time.Millisecond)
		d.expiryKnown = true
	}
	return d, nil
}

// Token returns the token while it is valid; see DevToken.
func (d *DevToken) Token(context.Context) (Token, error) {
	if err := d.check(d.now()); err != nil {
		return Token{}, err
	}
	return d.tok, nil
}

// check returns nil while the token may be used at now.
func (d *DevToken) check(now time.Time) error {
	if d.rejected.Load() {
		return &UnavailableError{Route: d.route, Err: &DevTokenError{Origin: d.origin, Reloadable: d.reloadable}}
	}
	if d.expiryKnown && !now.Before(d.tok.ExpiresAt) {
		return &UnavailableError{Route: d.route, Err: &DevTokenError{ExpiredAt: d.tok.ExpiresAt, Origin: d.origin, Reloadable: d.reloadable}}
	}
	return nil
}

// Invalidate is told that AEM rejected accessToken. A development token
// cannot be renewed, so this does nothing and returns false, except for a
// token whose expiry cannot be read: that one is taken to have expired, and
// the first call for it returns true; Token fails from then on.
func (d *DevToken) Invalidate(accessToken string) bool {
	if d.expiryKnown || accessToken == "" || accessToken != d.tok.AccessToken {
		return false
	}
	return d.rejected.CompareAndSwap(false, true)
}

// ExpiresAt returns when the token expires, and false if the token does not
// say.
func (d *DevToken) ExpiresAt() (time.Time, bool) {
	if !d.expiryKnown {
		return time.Time{}, false
	}
	return d.tok.ExpiresAt, true
}

// State describes the token for health checks: TokenExpiresAt is zero when
// the expiry is unknown, and LastError says why the token is no longer
// valid.
func (d *DevToken) State() CacheState {
	now := d.now()
	st := CacheState{TokenIssuedAt: d.tok.IssuedAt}
	if d.expiryKnown {
		st.TokenExpiresAt = d.tok.ExpiresAt
	}
	if err := d.check(now); err != nil {
		st.LastError = err
	} else {
		st.Valid = true
	}
	return st
}

// String describes d without the token.
func (d *DevToken) String() string {
	exp := "unknown"
	if d.expiryKnown {
		exp = d.tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return "ims.DevToken{origin=" + d.origin + " expires_at=" + exp + "}"
}

// DevTokenError says that a local development token can no longer be used,
// and how to get a new one.
type DevTokenError struct {
	// ExpiredAt is when the token expired; zero if AEM rejected a token
	// whose expiry could not be read.
	ExpiredAt time.Time
	// Origin is the file the token came from, or the environment variable.
	Origin string
	// Reloadable reports that Origin is a file aemproxy watches, so saving
	// a new token there is enough.
	Reloadable bool
}

func (e *DevTokenError) Error() string {
	var b strings.Builder
	if e.ExpiredAt.IsZero() {
		b.WriteString("AEM rejected the local development token from ")
		b.WriteString(e.Origin)
		b.WriteString(" (its expiry could not be read from the token, so it was used until AEM refused it); ")
	} else {
		b.WriteString("the local development token expired at ")
		b.WriteString(e.ExpiredAt.UTC().Format(time.RFC3339))
		b.WriteString("; ")
	}
	b.WriteString(getDevTokenHowTo)
	if e.Reloadable {
		b.WriteString(" and save it over ")
		b.WriteString(e.Origin)
		b.WriteString(" — aemproxy picks it up without a restart")
	} else {
		b.WriteString(" and put it in ")
		b.WriteString(e.Origin)
		b.WriteString(", then restart aemproxy")
	}
	return b.String()
}
