package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// AEM's CSRF filter refuses authenticated POST, PUT and DELETE requests
// without a valid CSRF-Token header with 403 (protocol §5). A route with
// CSRF set fetches the token from csrfPath with the route's own credential,
// keeps it briefly, and sends it on every write.
const (
	csrfPath = "/libs/granite/csrf/token.json"
	// csrfMaxAge bounds how long a token is kept even when it says it
	// lives longer; AEM's live for 10 minutes.
	csrfMaxAge = 5 * time.Minute
	// csrfDefaultAge is how long a token without a readable expiry is kept.
	csrfDefaultAge = time.Minute
	// csrfExpiryMargin is dropped from a token's own expiry, for clock skew
	// and for the time a request spends on its way.
	csrfExpiryMargin = time.Minute
	// csrfFreshFor is the age below which a token is trusted: a 403 that
	// answers a younger token is about permissions, unless it names CSRF.
	// It bounds the refetches that a technical account without write
	// access can cause to one per this interval.
	csrfFreshFor = 10 * time.Second
	// csrfFetchTimeout bounds one fetch; it runs detached from the request
	// that started it, as other requests may be waiting for it.
	csrfFetchTimeout = 30 * time.Second
	csrfMaxBody      = 64 << 10
	// csrfPeek is how much of a 403's body is searched for "csrf".
	csrfPeek = 4 << 10
)

// writeMethod reports whether AEM's CSRF filter wants a token for m.
func writeMethod(m string) bool {
	switch m {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// csrfToken is one token from AEM, for one Authorization value.
type csrfToken struct {
	header  []string // the CSRF-Token header value; nil when AEM gave none
	auth    string   // the Authorization value it was fetched with
	fetched time.Time
	expires time.Time
}

// csrfCache holds a route's current CSRF token and fetches a new one when
// it is missing, expired, or was fetched for another credential. Concurrent
// callers share one fetch per credential and wait for it with their own
// context; the fetch runs detached from them, bounded by csrfFetchTimeout.
type csrfCache struct {
	rt      *route
	now     func() time.Time
	cur     atomic.Pointer[csrfToken]
	fetches singleflight.Group // keyed by the Authorization value
}

// csrfError is a failed fetch of the CSRF token. Its message says what AEM
// answered and what to do; it never holds a token.
type csrfError struct {
	status int // AEM's status, 0 when there was no response
	msg    string
}

func (e *csrfError) Error() string { return "get AEM's CSRF token: " + e.msg }

// get returns a token for auth that has not expired, fetching one if
// needed.
func (c *csrfCache) get(ctx context.Context, auth string, id []string) (*csrfToken, error) {
	if t := c.cur.Load(); t != nil && t.auth == auth && c.now().Before(t.expires) {
		return t, nil
	}
	ch := c.fetches.DoChan(auth, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), csrfFetchTimeout)
		defer cancel()
		t, err := c.request(ctx, auth, id)
		c.rt.metrics.csrfFetch(err == nil)
		if err != nil {
			return nil, err
		}
		c.cur.Store(t)
		return t, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*csrfToken), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// drop forgets t if it is still the current token.
func (c *csrfCache) drop(t *csrfToken) { c.cur.CompareAndSwap(t, nil) }

func (c *csrfCache) request(ctx context.Context, auth string, id []string) (*csrfToken, error) {
	rt := c.rt
	u := *rt.upstream
	u.Path, u.RawPath = rt.upstream.Path+csrfPath, ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &csrfError{msg: err.Error()}
	}
	req.Host = rt.upstream.Host
	req.Header = http.Header{
		"Accept":       {"application/json"},
		"User-Agent":   {"aemproxy"},
		"X-Request-Id": id,
	}
	if auth != "" {
		req.Header["Authorization"] = []string{auth}
	}
	res, err := rt.transport.RoundTrip(req)
	if err != nil {
		return nil, &csrfError{msg: "could not reach AEM for " + csrfPath + ": " + unwrapURLError(err).Error()}
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
		return nil, &csrfError{status: res.StatusCode, msg: csrfStatusHint(res.StatusCode)}
	}
	var doc struct {
		Token *string `json:"token"`
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, csrfMaxBody+1))
	switch {
	case err != nil:
		return nil, &csrfError{msg: "reading AEM's answer from " + csrfPath + ": " + err.Error()}
	case len(b) > csrfMaxBody:
		return nil, &csrfError{msg: "AEM's answer from " + csrfPath + " is larger than 64 KiB; it should be {\"token\": \"...\"}"}
	case json.Unmarshal(b, &doc) != nil:
		return nil, &csrfError{msg: "AEM's answer from " + csrfPath + " is not JSON; it should be {\"token\": \"...\"} (is a login page or a dispatcher error answering instead?)"}
	}
	now := c.now()
	t := &csrfToken{auth: auth, fetched: now, expires: now.Add(csrfDefaultAge)}
	if doc.Token == nil || *doc.Token == "" {
		// Anonymous requests get no token, and need none.
		return t, nil
	}
	if !headerSafe(*doc.Token) {
		return nil, &csrfError{msg: "AEM's CSRF token from " + csrfPath + " is not a valid header value"}
	}
	t.header = []string{*doc.Token}
	if exp, ok := jwtExpiry(*doc.Token); ok {
		// A token that says it has (almost) expired already, as a skewed
		// clock may make it, is still used for a moment rather than
		// fetched again for every request.
		life := min(exp.Sub(now)-csrfExpiryMargin, csrfMaxAge)
		t.expires = now.Add(max(life, csrfFreshFor))
	}
	return t, nil
}

func csrfStatusHint(status int) string {
	s := "AEM answered " + strconv.Itoa(status) + " for " + csrfPath
	switch status {
	case http.StatusUnauthorized:
		return s + ": it did not accept the route's credential"
	case http.StatusForbidden:
		return s + ": the route's account may not read it, or a traffic filter refused it"
	case http.StatusNotFound:
		return s + ": is the path blocked by a dispatcher filter? Allow it, or turn csrf off for this route"
	}
	return s
}

// jwtExpiry reads the exp claim of a JWT without verifying it: AEM's CSRF
// tokens are JWTs, and their expiry decides how long one is kept.
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil || *claims.Exp <= 0 || *claims.Exp > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(*claims.Exp), 0), true
}

// headerSafe reports whether s can be sent as a header value as is:
// visible ASCII only, so nothing AEM sends can split a header.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// authValue is the Authorization value the exchange sends, or "".
func (x *exchange) authValue() string {
	rt := x.route
	switch {
	case x.token != "":
		return rt.authorization(x.scheme, x.token)[0]
	case rt.staticAuth != nil:
		return rt.staticAuth[0]
	}
	return ""
}

// getCSRF gets the CSRF token for the exchange's credential. AEM answering
// 401 means the bearer token is no longer good: it is invalidated and the
// fetch tried once more with the next one, as a 401 on the request itself
// would be.
func (x *exchange) getCSRF() error {
	rt, ctx := x.route, x.in.Context()
	t, err := rt.csrf.get(ctx, x.authValue(), x.id)
	var ce *csrfError
	if errors.As(err, &ce) && ce.status == http.StatusUnauthorized && x.token != "" && rt.invalidator != nil {
		rt.invalidator.Invalidate(x.token)
		tok, terr := rt.tokens.Token(ctx)
		if terr == nil && tok.AccessToken != "" && tok.AccessToken != x.token {
			x.token, x.scheme = tok.AccessToken, tok.Scheme
			t, err = rt.csrf.get(ctx, x.authValue(), x.id)
		}
	}
	if err != nil {
		if errors.As(err, &ce) {
			return &rejection{status: http.StatusBadGateway, reason: "csrf_unavailable", message: ce.Error()}
		}
		return err
	}
	x.csrf = t
	return nil
}

// retryCSRF replays req once with a new CSRF token when AEM's 403 is about
// the one sent: the answer names CSRF, or the token sent was not fresh. A
// request whose body was not buffered cannot be replayed; its 403 passes.
func (x *exchange) retryCSRF(req *http.Request, res *http.Response) (*http.Response, error) {
	rt, sent := x.route, x.csrf
	if !replayable(req) {
		return res, nil
	}
	// After a replay with a new IMS token, the CSRF token sent belongs to
	// the old one.
	auth := x.authValue()
	if sent.auth == auth && rt.csrf.now().Sub(sent.fetched) < csrfFreshFor && !peekCSRF(res) {
		return res, nil
	}
	rt.csrf.drop(sent)
	t, err := rt.csrf.get(req.Context(), auth, x.id)
	if err != nil || t == sent {
		if err != nil {
			x.h.log.Warn().Str("req_id", x.id[0]).Str("route", rt.name).Err(err).Msg("no new CSRF token after a 403; passing the 403 on")
		}
		return res, nil
	}
	retry, err := replay(req, res, "Csrf-Token", t.header)
	if err != nil {
		return res, nil
	}
	x.csrf = t
	x.csrfReplayed = true
	rt.metrics.csrfReplay()
	return rt.transport.RoundTrip(retry)
}

// peekCSRF reports whether the start of res's body mentions CSRF, leaving
// the body whole for the client.
func peekCSRF(res *http.Response) bool {
	buf := make([]byte, csrfPeek)
	n, err := io.ReadFull(res.Body, buf)
	buf = buf[:n]
	body := res.Body
	var rest io.Reader = body
	if err != nil {
		rest = errReader{err}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			rest = http.NoBody
		}
	}
	res.Body = readCloser{io.MultiReader(bytes.NewReader(buf), rest), body}
	return bytes.Contains(bytes.ToLower(buf), []byte("csrf"))
}

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// unwrapURLError drops the *url.Error around a transport error, which would
// repeat the request URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
