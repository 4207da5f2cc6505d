package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Options configure a Handler.
type Options struct {
	// Routes are the routes served on one listener. See the package
	// documentation for how a request picks one.
	Routes []Route
	// Logger receives one access log line per request at info level, and
	// details at debug. It never sees a token, secret, Cookie or
	// Authorization value.
	Logger zerolog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Now tells the time for CSRF token ages; nil means time.Now.
	Now func() time.Time
}

// Handler proxies requests to the routes' upstreams. It is safe for
// concurrent use.
type Handler struct {
	routes    []*route // in match order
	ownHosts  []hostPattern
	log       zerolog.Logger
	metrics   *Metrics
	ids       *requestIDs
	buffers   *bufferPool
	errorLog  *log.Logger
	exchanges sync.Pool
}

// New validates the routes and returns a Handler serving them. It reports
// every problem at once, each naming its route.
func New(o Options) (*Handler, error) {
	if len(o.Routes) == 0 {
		return nil, errors.New("proxy: no routes")
	}
	h := &Handler{
		log:      o.Logger,
		metrics:  o.Metrics,
		ids:      newRequestIDs(),
		buffers:  newBufferPool(),
		errorLog: log.New(debugWriter{o.Logger}, "", 0),
	}
	h.exchanges.New = func() any { return h.newExchange() }

	var problems []error
	names := map[string]bool{}
	var shared http.RoundTripper
	for i, r := range o.Routes {
		rt, err := compileRoute(i, r)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if names[rt.name] {
			problems = append(problems, fmt.Errorf("route %q: name used by an earlier route", rt.name))
			continue
		}
		names[rt.name] = true
		for _, prev := range h.routes {
			if sameHostsAndPrefix(prev, rt) {
				problems = append(problems, fmt.Errorf("route %q: same hosts and path prefix as route %q, so it could never be chosen", rt.name, prev.name))
			}
		}
		if rt.transport == nil {
			if shared == nil {
				t, err := NewTransport(TransportOptions{})
				if err != nil {
					return nil, err
				}
				shared = t
			}
			rt.transport = shared
		}
		rt.metrics = o.Metrics.forRoute(rt.name)
		if r.CSRF {
			rt.csrf = &csrfCache{rt: rt, now: o.Now}
			if o.Now == nil {
				rt.csrf.now = time.Now
			}
		}
		h.routes = append(h.routes, rt)
		h.ownHosts = append(h.ownHosts, rt.hosts...)
		if rt.external != nil {
			p, err := parseHostPattern(rt.external.Host)
			if err == nil {
				h.ownHosts = append(h.ownHosts, p)
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	// Routes with Hosts first, then longer prefixes; the stable sort keeps
	// configuration order among equals.
	slices.SortStableFunc(h.routes, func(a, b *route) int {
		if (len(a.hosts) > 0) != (len(b.hosts) > 0) {
			if len(a.hosts) > 0 {
				return -1
			}
			return 1
		}
		return len(b.prefix) - len(a.prefix)
	})
	return h, nil
}

// ServeHTTP proxies r to the route it matches, or answers it with a short
// JSON error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := h.exchanges.Get().(*exchange)
	x.start = time.Now()
	x.in = r
	x.rw = responseWriter{w: w}
	x.id = []string{h.ids.requestID(r.Header)}
	defer h.finish(x)
	x.serve()
	x.done = true
}

// finish writes the access log line and the metrics. It runs deferred so
// that a request aborted mid-body (ReverseProxy panics with
// http.ErrAbortHandler) is recorded too; such an exchange may still be
// referenced by the transport and is not reused.
func (h *Handler) finish(x *exchange) {
	dur := time.Since(x.start)
	r := x.in
	status := x.rw.status
	switch {
	case x.clientGone || (!x.done && r.Context().Err() != nil):
		status = statusClientClosed
	case status == 0 && x.upstreamStatus == http.StatusSwitchingProtocols:
		status = x.upstreamStatus // hijacked: the proxy wrote the 101 itself
	case status == 0:
		status = http.StatusOK
	}

	name := ""
	if x.route != nil {
		name = x.route.name
		x.route.metrics.done(r.Method, status, x.rw.bytes, dur.Seconds())
	}

	e := h.log.Info().
		Str("req_id", x.id[0]).
		Str("route", name).
		Str("method", r.Method).
		Str("path", r.URL.Path).
		Int("status", status).
		Int64("bytes", x.rw.bytes).
		Float64("dur_ms", float64(dur.Microseconds())/1000)
	if x.upstreamStatus != 0 && x.upstreamStatus != status {
		e.Int("upstream_status", x.upstreamStatus)
	}
	if x.replayed {
		e.Bool("replayed", true)
	}
	if x.csrfReplayed {
		e.Bool("csrf_replayed", true)
	}
	if !x.done {
		e.Bool("aborted", true)
	}
	if x.err != nil && status != statusClientClosed {
		e.Err(x.err)
	}
	e.Msg("request")

	if x.done {
		x.reset()
		h.exchanges.Put(x)
	}
}

// exchange is one request on its way through the proxy. Exchanges are
// pooled: each carries its own ReverseProxy whose hooks are bound to it
// once, so that per-request state reaches Rewrite, ModifyResponse, the
// ErrorHandler and the replaying transport without a context value or a
// closure per request.
type exchange struct {
	h  *Handler
	rp httputil.ReverseProxy
	rw responseWriter

	in       *http.Request
	route    *route
	start    time.Time
	id       []string // X-Request-Id, shared by the outbound request and the response
	token    string
	scheme   string // of token; "" means Bearer
	body     []byte // the buffered request body, when replayable
	bodyMode bodyMode

	csrf         *csrfToken // sent as CSRF-Token; nil when the route has no CSRF
	csrfReplayed bool

	upstreamStatus int
	upstreamLength int64 // the response's Content-Length, -1 if unknown
	replayed       bool
	clientGone     bool
	err            error
	done           bool
}

type bodyMode uint8

const (
	bodyAsIs     bodyMode = iota // no body, or streamed untouched
	bodyBuffered                 // x.body is the whole body: replayable
	bodyPrefixed                 // x.body was read ahead; the rest streams after it
)

func (h *Handler) newExchange() *exchange {
	x := &exchange{h: h}
	x.rp = httputil.ReverseProxy{
		Rewrite:        x.rewrite,
		ModifyResponse: x.modifyResponse,
		ErrorHandler:   x.errorHandler,
		Transport:      roundTripperFunc(x.roundTrip),
		BufferPool:     x,
		ErrorLog:       h.errorLog,
	}
	return x
}

// Get lends ReverseProxy the buffer that copies the response body, sized
// for the body's length (ReverseProxy calls it after modifyResponse).
func (x *exchange) Get() []byte { return x.h.buffers.get(x.upstreamLength) }

// Put takes back a buffer from Get.
func (x *exchange) Put(b []byte) { x.h.buffers.put(b) }

func (x *exchange) reset() {
	rp, h := x.rp, x.h
	*x = exchange{h: h, rp: rp}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (x *exchange) serve() {
	h, r := x.h, x.in
	if err := h.admit(r); err != nil {
		x.reject(err)
		return
	}
	rt := h.match(r)
	if rt == nil {
		x.reject(errNoRoute)
		return
	}
	x.route = rt
	rt.metrics.start()
	if rt.guard != nil {
		if d := rt.guard.Check(r, rt.policyPath(r.URL)); d != nil {
			x.reject(denied(d))
			return
		}
	}
	if rt.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > rt.maxBody {
			x.reject(rt.errBody)
			return
		}
		if r.ContentLength < 0 {
			r.Body = http.MaxBytesReader(&x.rw, r.Body, rt.maxBody)
		}
	}
	if rt.slots != nil {
		select {
		case rt.slots <- struct{}{}:
			// Deferred, so that a request aborted mid-body (ReverseProxy
			// panics with http.ErrAbortHandler) frees its slot too.
			defer func() { <-rt.slots }()
		default:
			x.reject(rt.errBusy)
			return
		}
	}
	if rt.tokens != nil {
		tok, err := rt.tokens.Token(r.Context())
		if err == nil && tok.AccessToken == "" {
			err = errEmptyToken
		}
		if err != nil {
			x.fail(&tokenError{err})
			return
		}
		x.token, x.scheme = tok.AccessToken, tok.Scheme
	}
	csrf := rt.csrf != nil && writeMethod(r.Method)
	// Only a request that carries a token can meet a 401 worth replaying,
	// and only a write on a CSRF route a 403 worth replaying, so only then
	// is its body worth buffering.
	if rt.tokens != nil || csrf {
		if err := x.readBody(); err != nil {
			x.fail(err)
			return
		}
	}
	if csrf {
		if err := x.getCSRF(); err != nil {
			x.fail(err)
			return
		}
	}
	x.rp.ServeHTTP(&x.rw, r)
}

// admit refuses requests that would make the proxy an open proxy or that
// name no clean path.
func (h *Handler) admit(r *http.Request) *rejection {
	if r.Method == http.MethodConnect {
		return errConnect
	}
	if r.URL.Scheme != "" || r.URL.Host != "" {
		// Absolute-form (RFC 9112 §3.2.2) is what a client sends to a
		// forward proxy. Serving it for another host would hand out AEM
		// content, with our credential, under that host's name.
		if !h.ownHost(r) {
			return errForeignTarget
		}
	}
	if r.URL.Opaque != "" || !strings.HasPrefix(r.URL.Path, "/") {
		return errBadTarget
	}
	if !cleanPath(r.URL.Path) {
		return errUncleanPath
	}
	return nil
}

// ownHost reports whether an absolute-form target names this proxy: a
// route's host, a route's external URL, or the address the connection
// arrived on.
func (h *Handler) ownHost(r *http.Request) bool {
	host := r.URL.Host
	for _, p := range h.ownHosts {
		if p.matches(host) {
			return true
		}
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return strings.EqualFold(a.String(), host)
	}
	return false
}

// match returns the route for r, or nil.
func (h *Handler) match(r *http.Request) *route {
	for _, rt := range h.routes {
		if rt.matchHost(r.Host) && rt.matchPath(r.URL.Path) {
			return rt
		}
	}
	return nil
}

// reject refuses the request for a reason counted in
// aemproxy_rejected_requests_total, naming the route if one was matched.
func (x *exchange) reject(err *rejection) {
	x.err = err
	x.h.metrics.reject(err.reason)
	name := ""
	if x.route != nil {
		name = x.route.name
	}
	writeError(&x.rw, classify(err), name, x.id[0])
}

// fail answers the client for err, or notes that there is nobody left to
// answer.
func (x *exchange) fail(err error) {
	x.err = err
	if x.in.Context().Err() != nil {
		x.clientGone = true
		x.h.log.Debug().Str("req_id", x.id[0]).Str("route", x.route.name).Err(err).Msg("client went away")
		return
	}
	var big *http.MaxBytesError
	if errors.As(err, &big) {
		x.h.metrics.reject("body_too_large")
	}
	writeError(&x.rw, classify(err), x.route.name, x.id[0])
}

func (x *exchange) errorHandler(_ http.ResponseWriter, _ *http.Request, err error) {
	x.fail(err)
}

// readBody buffers a request body that fits the route's replay limit, so
// that the request can be sent again after a 401. Bodies of unknown length
// are read up to the limit plus one byte; a longer one streams on after
// what was read, and is not replayable.
func (x *exchange) readBody() error {
	r, limit := x.in, x.route.replayLimit
	if limit <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || r.ContentLength > limit {
		return nil
	}
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return &bodyError{err}
		}
		x.body, x.bodyMode = buf, bodyBuffered
		return nil
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		return &bodyError{err}
	}
	x.body = b.Bytes()
	if int64(len(x.body)) <= limit {
		x.bodyMode = bodyBuffered
	} else {
		x.bodyMode = bodyPrefixed
	}
	return nil
}

// rewrite builds the outbound request (ReverseProxy has already removed
// hop-by-hop headers, Forwarded and X-Forwarded-*).
func (x *exchange) rewrite(pr *httputil.ProxyRequest) {
	rt, out := x.route, pr.Out
	out.URL.Path, out.URL.RawPath = rt.forwardPath(out.URL)
	pr.SetURL(rt.upstream)
	out.Host = rt.upstream.Host
	pr.SetXForwarded()

	h := out.Header
	if !rt.fwdHost {
		delete(h, "X-Forwarded-Host")
	}
	// The proxy decides the credential. Proxy-Authorization is hop-by-hop
	// and already gone; deleting it again costs nothing.
	delete(h, "Authorization")
	delete(h, "Proxy-Authorization")
	if !rt.passCookies {
		delete(h, "Cookie")
	}
	if x.token != "" {
		h["Authorization"] = rt.authorization(x.scheme, x.token)
	} else if rt.staticAuth != nil {
		h["Authorization"] = rt.staticAuth
	}
	// A route with an API key decides X-Api-Key; one without passes the
	// client's on.
	if rt.apiKeyPaths != nil {
		delete(h, "X-Api-Key")
		if rt.wantsAPIKey(out.URL.Path) {
			if v := rt.apiKeyHeader(); v != nil {
				h["X-Api-Key"] = v
			}
		}
	}
	if rt.csrf != nil {
		delete(h, "Csrf-Token")
		if x.csrf != nil && x.csrf.header != nil {
			h["Csrf-Token"] = x.csrf.header
		}
	}
	h["X-Request-Id"] = x.id

	switch x.bodyMode {
	case bodyBuffered:
		// The body is here already: asking AEM whether to send it would
		// only add a round trip.
		delete(h, "Expect")
		body := x.body
		out.ContentLength = int64(len(body))
		out.TransferEncoding = nil
		if len(body) == 0 {
			out.Body, out.GetBody = nil, nil
			break
		}
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.Body, _ = out.GetBody()
	case bodyPrefixed:
		out.Body = io.NopCloser(io.MultiReader(bytes.NewReader(x.body), pr.In.Body))
	}
}

// roundTrip sends the request upstream. When AEM answers 401, it
// invalidates the token and, if the request can be sent again (no body, or
// a buffered one) and the source then has a different token, replays it
// once with that. 403 (permissions, allow-list, CSRF) is never a reason to
// refresh the token; on a route with CSRF, a 403 about the CSRF token sent
// replays the request once with a new CSRF token. Whether a 401 really ends
// a token is the source's call: AEM also answers 401 to tokens it will
// never take on a path (an OAuth token on a classic path, protocol §4), and
// ims.Cache keeps a just-fetched token rather than make IMS mint tokens for
// nothing.
func (x *exchange) roundTrip(req *http.Request) (*http.Response, error) {
	rt := x.route
	res, err := rt.transport.RoundTrip(req)
	if err != nil {
		return res, err
	}
	if res.StatusCode == http.StatusUnauthorized && x.token != "" {
		if res, req, err = x.retryToken(req, res); err != nil {
			return res, err
		}
	}
	if res.StatusCode == http.StatusForbidden && x.csrf != nil {
		return x.retryCSRF(req, res)
	}
	return res, nil
}

// retryToken replays req once with a new token after AEM's 401, if it can.
// It returns the response to go on with and the request that got it.
func (x *exchange) retryToken(req *http.Request, res *http.Response) (*http.Response, *http.Request, error) {
	rt := x.route
	if rt.invalidator != nil {
		rt.invalidator.Invalidate(x.token)
	}
	if !replayable(req) {
		return res, req, nil
	}
	tok, err := rt.tokens.Token(req.Context())
	if err != nil || tok.AccessToken == "" || tok.AccessToken == x.token {
		if err != nil {
			x.h.log.Warn().Str("req_id", x.id[0]).Str("route", rt.name).Err(err).Msg("no fresh IMS token after a 401; passing the 401 on")
		}
		return res, req, nil
	}
	retry, err := replay(req, res, "Authorization", rt.authorization(tok.Scheme, tok.AccessToken))
	if err != nil {
		return res, req, nil
	}
	x.token, x.scheme = tok.AccessToken, tok.Scheme
	x.replayed = true
	rt.metrics.replay()
	res, err = rt.transport.RoundTrip(retry)
	return res, retry, err
}

// replayable reports whether req can be sent again: it has no body, or one
// that GetBody gives again (buffered by readBody).
func replayable(req *http.Request) bool { return req.Body == nil || req.GetBody != nil }

// replay returns a copy of req, with a fresh body and header name set to
// value (removed when value is nil), to send in place of req, and lets go
// of res, the response it replaces.
func replay(req *http.Request, res *http.Response, name string, value []string) (*http.Request, error) {
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		retry.Body = body
	}
	if value != nil {
		retry.Header[name] = value
	} else {
		delete(retry.Header, name)
	}
	// Drain a little so the connection can be reused, then let it go.
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	res.Body.Close()
	return retry, nil
}

// modifyResponse cleans the upstream's response before it is copied to the
// client.
func (x *exchange) modifyResponse(res *http.Response) error {
	x.upstreamStatus = res.StatusCode
	x.upstreamLength = res.ContentLength
	h := res.Header
	// Set here rather than before proxying: ReverseProxy clears the
	// response headers after relaying a 1xx (103 Early Hints).
	h["X-Request-Id"] = x.id
	if !x.route.passCookies {
		delete(h, "Set-Cookie")
	}
	if loc := h["Location"]; len(loc) == 1 {
		if s, ok := x.rewriteLocation(loc[0]); ok {
			h["Location"] = []string{s}
		}
	}
	return nil
}

// rewriteLocation maps a Location on the upstream's own origin to the
// proxy's external URL (the route's ExternalURL, else the scheme and host
// the client used), adding back a stripped prefix. Foreign locations, such
// as signed blob storage URLs, and relative-path references stay as they
// are.
func (x *exchange) rewriteLocation(loc string) (string, bool) {
	rt := x.route
	u, err := url.Parse(loc)
	if err != nil {
		return "", false
	}
	absolute := u.Scheme != "" || u.Host != ""
	if absolute && !rt.sameOrigin(u) {
		return "", false
	}
	p := u.EscapedPath()
	if !absolute && (!strings.HasPrefix(p, "/") || rt.external == nil && !rt.strip && rt.upstream.Path == "") {
		return "", false // resolves against the proxy's URL as it is
	}
	if p == "" {
		p = "/"
	}
	// Upstream paths and prefixes need no escaping (checked in New), so
	// they compare equal to the escaped path.
	if base := rt.upstream.Path; base != "" {
		if !hasPathPrefix(p, base) {
			return "", false // not below this route's upstream path: leave it
		}
		p = p[len(base):]
		if p == "" {
			p = "/"
		}
	}
	if rt.strip {
		p = rt.prefix + p
	}

	var b strings.Builder
	switch {
	case rt.external != nil:
		b.WriteString(rt.external.Scheme)
		b.WriteString("://")
		b.WriteString(rt.external.Host)
		b.WriteString(rt.external.Path)
	case absolute:
		if x.in.TLS != nil {
			b.WriteString("https://")
		} else {
			b.WriteString("http://")
		}
		b.WriteString(x.in.Host)
	}
	b.WriteString(p)
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteByte('?')
		b.WriteString(u.RawQuery)
	}
	if u.Fragment != "" {
		b.WriteByte('#')
		b.WriteString(u.EscapedFragment())
	}
	return b.String(), true
}
