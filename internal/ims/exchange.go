package ims

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultJWTLifetime is how long the JWT sent to IMS is valid.
	DefaultJWTLifetime = 5 * time.Minute
	// minJWTLifetime leaves room for a slow request (IMS adds 30 s of skew);
	// the config accepts the same range.
	minJWTLifetime = 10 * time.Second

	maxResponseBytes = 1 << 20
	// maxTokenLifetime bounds a lifetime read from IMS: IMS tokens live 24 h,
	// and a larger value means a unit mix-up or garbage, not a token to keep.
	maxTokenLifetime = 366 * 24 * time.Hour
	maxRetryAfter    = time.Hour
)

// ErrMalformedResponse marks a response from IMS that could not be read as a
// token or an error. It is transient: a proxy or a hiccup may produce one.
var ErrMalformedResponse = errors.New("malformed IMS response")

// ExchangeOptions configure a JWTExchange. The zero value is ready to use.
type ExchangeOptions struct {
	// BaseURL is where the exchange is sent, e.g. a test server or an egress
	// gateway; nil means https://{IMSEndpoint}. It changes only the request's
	// destination, never the JWT's audience or scope claims.
	BaseURL *url.URL
	// Client sends the request; nil means NewHTTPClient(HTTPClientOptions{}).
	Client *http.Client
	// JWTLifetime is the validity of each JWT; 0 means DefaultJWTLifetime.
	// It must be between 10 seconds and MaxJWTLifetime.
	JWTLifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// JWTExchange is a TokenSource that exchanges a freshly signed JWT at IMS
// (POST /ims/exchange/jwt) on every Token call; wrap it in a Cache. It is safe
// for concurrent use.
type JWTExchange struct {
	creds    ServiceCredentials
	endpoint string
	client   *http.Client
	lifetime time.Duration
	now      func() time.Time
}

// NewJWTExchange checks c and o and returns a JWTExchange.
func NewJWTExchange(c *ServiceCredentials, o ExchangeOptions) (*JWTExchange, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("new JWT exchange: service credentials: %w", err)
	}
	x := &JWTExchange{creds: *c, lifetime: o.JWTLifetime, now: o.Now}
	x.creds.IMSEndpoint, _ = normalizeIMSEndpoint(c.IMSEndpoint)
	if x.lifetime == 0 {
		x.lifetime = DefaultJWTLifetime
	}
	if x.lifetime < minJWTLifetime || x.lifetime > MaxJWTLifetime {
		return nil, fmt.Errorf("new JWT exchange: JWT lifetime %v: must be between %v and %v", o.JWTLifetime, minJWTLifetime, MaxJWTLifetime)
	}
	if x.now == nil {
		x.now = time.Now
	}
	var err error
	x.endpoint, x.client, err = exchangeEndpoint(x.creds.IMSEndpoint, o, "ims", "exchange", "jwt")
	if err != nil {
		return nil, fmt.Errorf("new JWT exchange: %w", err)
	}
	return x, nil
}

// exchangeEndpoint returns the URL of an IMS token endpoint (path under
// o.BaseURL, or under https://{host}) and the client to send to it.
func exchangeEndpoint(host string, o ExchangeOptions, path ...string) (string, *http.Client, error) {
	base := &url.URL{Scheme: "https", Host: host}
	if o.BaseURL != nil {
		if err := checkBaseURL(o.BaseURL); err != nil {
			return "", nil, err
		}
		base = o.BaseURL
	}
	client := o.Client
	if client == nil {
		var err error
		if client, err = NewHTTPClient(HTTPClientOptions{}); err != nil {
			return "", nil, err
		}
	}
	return base.JoinPath(path...).String(), client, nil
}

// checkBaseURL accepts an absolute http(s) URL without user info, query or
// fragment, so that the endpoint URL, which appears in errors, holds no
// secret.
func checkBaseURL(u *url.URL) error {
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("IMS URL %q: scheme must be https or http", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("IMS URL %q: no host", u.Redacted())
	case u.User != nil:
		return fmt.Errorf("IMS URL %q: must not contain user info", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("IMS URL %q: must not have a query or fragment", u.Redacted())
	}
	return nil
}

// Token signs a JWT and exchanges it for an access token. An IMS refusal is
// an *Error; see IsPermanent.
func (x *JWTExchange) Token(ctx context.Context) (Token, error) {
	assertion, err := x.creds.SignJWT(x.now(), x.lifetime)
	if err != nil {
		return Token{}, err
	}
	secret := x.creds.ClientSecret.Reveal()
	form := url.Values{
		"client_id":     {x.creds.ClientID},
		"client_secret": {secret},
		"jwt_token":     {assertion},
	}
	return requestToken(ctx, tokenRequest{
		client:   x.client,
		endpoint: x.endpoint,
		form:     form,
		unit:     time.Millisecond, // spec §3: milliseconds at this endpoint
		now:      x.now,
		secrets:  []string{secret, assertion},
	})
}

// CertificateNotAfter returns when the credentials' certificate expires, or
// the zero time if they carry none.
func (x *JWTExchange) CertificateNotAfter() time.Time { return x.creds.CertificateNotAfter() }

// tokenRequest is one form POST to an IMS token endpoint. The JWT exchange
// and the OAuth client-credentials grant differ only in these fields.
type tokenRequest struct {
	client   *http.Client
	endpoint string
	form     url.Values
	// unit of the response's expires_in: milliseconds for /ims/exchange/jwt,
	// seconds for /ims/token/v3 (spec §3, §4).
	unit time.Duration
	now  func() time.Time
	// secrets are scrubbed from anything IMS echoes back.
	secrets []string
	// clientCredentials marks the OAuth grant, whose failures need other
	// hints than the JWT exchange's.
	clientCredentials bool
}

// requestToken posts r.form to r.endpoint and decodes the answer.
func requestToken(ctx context.Context, r tokenRequest) (Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, strings.NewReader(r.form.Encode()))
	if err != nil {
		return Token{}, fmt.Errorf("request IMS token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		// A *url.Error names the method and endpoint URL, neither secret.
		return Token{}, fmt.Errorf("request IMS token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Token{}, fmt.Errorf("read IMS response from %s: %w", r.endpoint, err)
	}
	if len(body) > maxResponseBytes {
		return Token{}, fmt.Errorf("read IMS response from %s: %w: larger than %d bytes", r.endpoint, ErrMalformedResponse, maxResponseBytes)
	}
	tok, err := decodeTokenResponse(resp.StatusCode, resp.Header, body, r.unit, r.now())
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Description = scrub(e.Description, r.secrets)
			e.Code = scrub(e.Code, r.secrets)
			e.clientCredentials = r.clientCredentials
			return Token{}, e
		}
		return Token{}, fmt.Errorf("read IMS response from %s: %w", r.endpoint, err)
	}
	return tok, nil
}

// scrub replaces every occurrence of a secret in s.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// tokenResponse is a 200 answer (spec §3, §4).
type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
}

// errorResponse is the body of an IMS refusal.
type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// decodeTokenResponse turns one IMS answer into a Token or an error, with no
// I/O. unit is the unit of expires_in; the access token's own created_at and
// expires_in (milliseconds, spec §2) take precedence when present. It rejects
// a 200 without an access token, a non-positive or absurd lifetime and a token
// already expired at now. A non-200 status becomes an *Error. No error
// contains the access token.
func decodeTokenResponse(status int, header http.Header, body []byte, unit time.Duration, now time.Time) (Token, error) {
	if status != http.StatusOK {
		e := &Error{StatusCode: status, RetryAfter: parseRetryAfter(header.Get("Retry-After"), now)}
		var er errorResponse
		if json.Unmarshal(body, &er) == nil {
			e.Code = sanitize(er.Error, maxCodeRunes)
			e.Description = sanitize(er.Description, 4*maxDescriptionRunes)
		}
		return Token{}, e
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return Token{}, fmt.Errorf("%w: 200 response is not a JSON token object", ErrMalformedResponse)
	}
	if tr.AccessToken == "" {
		return Token{}, fmt.Errorf("%w: 200 response has no access_token", ErrMalformedResponse)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return Token{}, fmt.Errorf("%w: token_type is %q, want bearer", ErrMalformedResponse, sanitize(tr.TokenType, 20))
	}

	tok := Token{AccessToken: tr.AccessToken}
	if createdAt, ms, ok := accessTokenTimes(tr.AccessToken); ok {
		if ms <= 0 || ms > int64(maxTokenLifetime/time.Millisecond) {
			return Token{}, fmt.Errorf("%w: access token's expires_in claim is %d ms", ErrMalformedResponse, ms)
		}
		tok.IssuedAt, tok.ExpiresAt = createdAt, createdAt.Add(time.Duration(ms)*time.Millisecond)
	} else {
		n, err := parseCount(tr.ExpiresIn)
		if err != nil {
			return Token{}, fmt.Errorf("%w: expires_in: %v", ErrMalformedResponse, err)
		}
		if n <= 0 || n > int64(maxTokenLifetime/unit) {
			return Token{}, fmt.Errorf("%w: expires_in is %d %s", ErrMalformedResponse, n, unitName(unit))
		}
		tok.IssuedAt, tok.ExpiresAt = now, now.Add(time.Duration(n)*unit)
	}
	if tok.ExpiresAt.Sub(now) > maxTokenLifetime {
		return Token{}, fmt.Errorf("%w: token expires at %s, implausibly far in the future", ErrMalformedResponse, tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !tok.ValidAt(now) {
		return Token{}, fmt.Errorf("%w: IMS returned a token that expired at %s (now %s): check this machine's clock",
			ErrMalformedResponse, tok.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return tok, nil
}

func unitName(unit time.Duration) string {
	if unit == time.Millisecond {
		return "ms"
	}
	return unit.String()
}

// accessTokenTimes reads created_at and expires_in (milliseconds, as strings
// or numbers) from the payload of an IMS access token, without verifying its
// signature: only IMS and AEM need to trust it; we only need its expiry.
func accessTokenTimes(token string) (createdAt time.Time, lifetimeMillis int64, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > maxResponseBytes {
		return time.Time{}, 0, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, 0, false
	}
	var claims struct {
		CreatedAt json.RawMessage `json:"created_at"`
		ExpiresIn json.RawMessage `json:"expires_in"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}, 0, false
	}
	created, err1 := parseCount(claims.CreatedAt)
	expires, err2 := parseCount(claims.ExpiresIn)
	// created_at beyond year 9999 is garbage, not a time to compute with.
	if err1 != nil || err2 != nil || created <= 0 || created > 253402300799999 {
		return time.Time{}, 0, false
	}
	return time.UnixMilli(created), expires, true
}

// parseCount reads an integer given as a JSON number or a JSON string of
// digits, as IMS writes both.
func parseCount(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errors.New("missing")
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("not a string")
		}
	} else {
		s = string(raw)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		// IMS never sends fractions, but a JSON encoder might write 8.64e+07.
		f, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
			return 0, fmt.Errorf("%q is not an integer", sanitize(s, 24))
		}
		n = int64(f)
	}
	return n, nil
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date, capped at
// maxRetryAfter; 0 if absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
