// Package ims holds valid credentials for AEM as a Cloud Service: it reads
// service credentials, signs the JWT, exchanges it at IMS and keeps the
// resulting access token fresh in a cache; it does the same for OAuth
// server-to-server credentials, and also hands out local development tokens
// and HTTP Basic logins for a local AEM SDK. A Provider detects which kind a
// credentials file holds and reloads it when it changes.
package ims

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// A TokenSource supplies IMS access tokens. Token must be safe for concurrent
// use, must honour ctx for cancellation, and never returns an expired token
// together with a nil error.
type TokenSource interface {
	Token(ctx context.Context) (Token, error)
}

// Token is an IMS access token. Its String and MarshalZerologObject methods
// never reveal AccessToken, so a Token can be logged or wrapped in an error.
type Token struct {
	// AccessToken is the bearer credential. Secret: never log it.
	AccessToken string
	// IssuedAt is when IMS created the token (its created_at claim), or when
	// the response arrived if the token does not say.
	IssuedAt time.Time
	// ExpiresAt is when IMS stops accepting the token.
	ExpiresAt time.Time
	// Scheme is the Authorization scheme the token goes with; "" means
	// "Bearer". A local AEM SDK's HTTP Basic credential uses "Basic".
	Scheme string
}

// IsZero reports whether t holds no token.
func (t Token) IsZero() bool { return t.AccessToken == "" }

// ValidAt reports whether t is present and unexpired at now.
func (t Token) ValidAt(now time.Time) bool {
	return t.AccessToken != "" && now.Before(t.ExpiresAt)
}

// String describes t without revealing the access token.
func (t Token) String() string {
	if t.IsZero() {
		return "ims.Token{none}"
	}
	return "ims.Token{expires_at=" + t.ExpiresAt.UTC().Format(time.RFC3339) + "}"
}

// GoString keeps %#v from printing the access token.
func (t Token) GoString() string { return t.String() }

// MarshalZerologObject logs t's times, never the access token.
func (t Token) MarshalZerologObject(e *zerolog.Event) {
	e.Time("issued_at", t.IssuedAt).Time("expires_at", t.ExpiresAt)
}

// Secret is a string that must never be printed: fmt, zerolog and
// encoding/json all see a redaction marker. Use Reveal where the value is
// really needed (an HTTP form body, a signature).
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer without revealing the value.
func (s Secret) GoString() string { return redacted }

// MarshalText keeps encoding/json and zerolog from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
