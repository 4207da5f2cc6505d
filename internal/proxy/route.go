package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aemproxy/aemproxy/internal/guard"
	"github.com/aemproxy/aemproxy/internal/ims"
)

// Route sends the requests it matches to one AEM upstream with one
// credential. The zero value of every optional field is the safe default.
type Route struct {
	// Name identifies the route in logs, metrics and error responses.
	// Letters, digits, '-', '_' and '.'.
	Name string
	// Upstream is scheme://host[:port] of AEM. A path on it is prepended to
	// every forwarded path.
	Upstream *url.URL
	// Hosts restricts the route to requests for these hosts
	// (case-insensitive; the port is ignored unless an entry gives one).
	// Empty matches any host.
	Hosts []string
	// PathPrefix restricts the route to paths under it, matched on segment
	// boundaries. "" or "/" matches everything.
	PathPrefix string
	// StripPrefix removes PathPrefix before forwarding, and adds it back to
	// rewritten Location headers.
	StripPrefix bool
	// Tokens supplies the bearer token. Nil forwards with no Authorization
	// at all (a local AEM SDK, or pass-through).
	Tokens ims.TokenSource
	// Authorization is a fixed Authorization header value, e.g. HTTP Basic
	// for a local AEM SDK. It is used only when Tokens is nil.
	Authorization ims.Secret
	// APIKey is sent as X-Api-Key on requests whose forwarded path starts
	// with one of APIKeyPaths: AEM's OpenAPI-based APIs under /adobe/ want
	// the OAuth client id there (protocol §4). Empty sends none.
	APIKey string
	// APIKeyFunc, when set, is asked for the key on each request that
	// wants one, and overrides APIKey: the OAuth client id can change when
	// the credentials file is reloaded. An empty result sends no key.
	APIKeyFunc func() string
	// APIKeyPaths are the path prefixes that get the API key; nil means
	// ["/adobe/"].
	APIKeyPaths []string
	// ExternalURL is the proxy's address as clients know it, the base of
	// rewritten Location headers. Nil uses the scheme and host of the
	// inbound request.
	ExternalURL *url.URL
	// Transport sends the requests upstream. Nil uses one
	// NewTransport(TransportOptions{}) shared by all routes that leave it nil.
	Transport http.RoundTripper
	// ReplayBodyLimit is the largest request body held in memory so that a
	// request can be replayed after a 401. 0 means 64 KiB; negative never
	// buffers, so requests with a body are never replayed.
	ReplayBodyLimit int64
	// ForwardedHost sends X-Forwarded-Host (the host the client asked for).
	// Nil means true.
	ForwardedHost *bool
	// PassCookies lets Cookie through to AEM and Set-Cookie back. Off by
	// default: AEM may set login-token, a credential of the technical
	// account, and a shared proxy must not hand one caller's cookie to
	// others.
	PassCookies bool
	// CSRF fetches AEM's CSRF token with the route's credential and sends
	// it as CSRF-Token on POST, PUT, PATCH and DELETE, replacing the
	// client's; a 403 about the token sent replays the request once with a
	// new one. Off, the client's CSRF-Token passes through.
	CSRF bool
	// Guard, when set, is asked about every request the route matched,
	// before a token is fetched; it sees the decoded path AEM will receive
	// (after StripPrefix). A refused request is answered with the Denial's
	// status and counted in aemproxy_rejected_requests_total.
	Guard *guard.Guard
	// MaxBodyBytes, when positive, refuses request bodies larger than this
	// with 413: at once when Content-Length says so, else when the body has
	// been read that far.
	MaxBodyBytes int64
	// MaxConcurrent, when positive, bounds the requests this route serves
	// at once; a request beyond it is answered 503 with Retry-After at once,
	// never queued.
	MaxConcurrent int
}

const (
	defaultReplayBodyLimit = 64 << 10
	// maxReplayBodyLimit bounds the memory one request may pin; every
	// concurrent request with a body may hold this much.
	maxReplayBodyLimit = 16 << 20
)

// route is a Route ready to serve: validated, normalized, with what the hot
// path needs computed once.
type route struct {
	name        string
	upstream    *url.URL // path without trailing slash
	origin      string   // upstream host, lower case, default port removed
	hosts       []hostPattern
	prefix      string // "" for everything, else clean and without trailing slash
	strip       bool
	tokens      ims.TokenSource
	invalidator invalidator // nil when tokens cannot invalidate
	external    *url.URL    // path without trailing slash
	transport   http.RoundTripper
	replayLimit int64 // <= 0: never buffer
	fwdHost     bool
	passCookies bool
	metrics     *routeMetrics
	guard       *guard.Guard
	maxBody     int64
	errBody     *rejection    // 413 naming maxBody
	csrf        *csrfCache    // nil: CSRF-Token passes through
	slots       chan struct{} // nil: no concurrency limit
	errBusy     *rejection    // 503 naming the limit

	// staticAuth is Route.Authorization as a header value; nil for none.
	staticAuth []string
	// apiKey is Route.APIKey as a header value; nil for none.
	apiKey      []string
	apiKeyFunc  func() string
	apiKeyPaths []string
	// dynKey caches the header value of the last key apiKeyFunc returned.
	dynKey atomic.Pointer[headerValue]

	// bearer caches the Authorization value for the current token so that
	// requests do not build the same string again and again.
	bearer atomic.Pointer[bearerHeader]
}

// invalidator is implemented by token sources that can drop a token AEM
// refused, so that the next Token call fetches a new one.
type invalidator interface {
	Invalidate(accessToken string) bool
}

type bearerHeader struct {
	scheme, token string
	value         []string
}

// authorization returns the outbound Authorization header value for a
// token of the given scheme ("" means Bearer). The slice is shared by
// concurrent requests: it has capacity 1, so an Add copies it rather than
// writing into it, and nothing sets its element.
func (rt *route) authorization(scheme, token string) []string {
	if b := rt.bearer.Load(); b != nil && b.token == token && b.scheme == scheme {
		return b.value
	}
	// Keyed by the scheme as given ("" for Bearer, the common case), not
	// the defaulted name, or every Bearer request would miss.
	name := scheme
	if name == "" {
		name = "Bearer"
	}
	b := &bearerHeader{scheme: scheme, token: token, value: []string{name + " " + token}}
	rt.bearer.Store(b)
	return b.value
}

// headerValue is a header value computed once for a given input.
type headerValue struct {
	in    string
	value []string
}

// apiKeyHeader returns the X-Api-Key value to send, nil for none. Like
// authorization, the returned slice is shared and never written.
func (rt *route) apiKeyHeader() []string {
	if rt.apiKeyFunc == nil {
		return rt.apiKey
	}
	key := rt.apiKeyFunc()
	if key == "" {
		return nil
	}
	if v := rt.dynKey.Load(); v != nil && v.in == key {
		return v.value
	}
	v := &headerValue{in: key, value: []string{key}}
	rt.dynKey.Store(v)
	return v.value
}

// wantsAPIKey reports whether a request for the forwarded path gets
// X-Api-Key.
func (rt *route) wantsAPIKey(path string) bool {
	for _, p := range rt.apiKeyPaths {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

type hostPattern struct {
	host    string // lower case
	hasPort bool
}

// matches reports whether the request host h (as in Request.Host) is p.
func (p hostPattern) matches(h string) bool {
	if p.hasPort {
		return strings.EqualFold(p.host, h)
	}
	return strings.EqualFold(p.host, stripPort(h))
}

func (rt *route) matchHost(h string) bool {
	if len(rt.hosts) == 0 {
		return true
	}
	for _, p := range rt.hosts {
		if p.matches(h) {
			return true
		}
	}
	return false
}

// matchPath reports whether the clean path p is under the route's prefix.
func (rt *route) matchPath(p string) bool {
	return hasPathPrefix(p, rt.prefix)
}

// hasPathPrefix reports whether p is prefix or below it on a segment
// boundary. An empty prefix matches everything.
func hasPathPrefix(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || prefix == "" || p[len(prefix)] == '/'
}

// stripPort returns h without a trailing :port. IPv6 literals keep their
// brackets.
func stripPort(h string) string {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.IndexByte(h[i:], ']') >= 0 {
		return h
	}
	if h[0] != '[' && strings.IndexByte(h[:i], ':') >= 0 {
		return h // a bare IPv6 address, no port
	}
	return h[:i]
}

// cleanPath reports whether p is a path that needs no cleaning: it starts
// with "/", has no empty segment except for a trailing slash, and no "." or
// ".." segment, also counting a segment cut at ";" (servlet path
// parameters, "..;/") and segments separated by "\".
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for rest := p[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" && more {
			return false
		}
		if dotSegment(seg) {
			return false
		}
		if !more {
			return true
		}
		rest = tail
	}
}

func dotSegment(seg string) bool {
	for seg != "" {
		var part string
		part, seg, _ = strings.Cut(seg, `\`)
		if i := strings.IndexByte(part, ';'); i >= 0 {
			part = part[:i]
		}
		if part == "." || part == ".." {
			return true
		}
	}
	return false
}

// safePathChars reports whether p holds only characters that a URL path
// carries unescaped, so that p's decoded and escaped forms are the same
// string and it can be matched against either.
func safePathChars(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~$&+,/:;=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// stripEscaped removes the first n decoded bytes from the escaped path raw.
// It reports false when the rest does not start at a literal "/" (the
// boundary was itself escaped), in which case the caller forwards the
// decoded path instead.
func stripEscaped(raw string, n int) (string, bool) {
	i := 0
	for ; n > 0 && i < len(raw); n-- {
		if raw[i] == '%' {
			i += 3
		} else {
			i++
		}
	}
	if n > 0 || i > len(raw) {
		return "", false
	}
	rest := raw[i:]
	if rest != "" && rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// forwardPath returns the path and raw path to send upstream for the
// inbound URL u, removing the route's prefix when it strips one.
func (rt *route) forwardPath(u *url.URL) (path, rawPath string) {
	if !rt.strip || rt.prefix == "" {
		return u.Path, u.RawPath
	}
	path = u.Path[len(rt.prefix):]
	if path == "" {
		return "/", ""
	}
	if u.RawPath != "" {
		// An empty rawPath makes url.URL escape path itself.
		rawPath, _ = stripEscaped(u.RawPath, len(rt.prefix))
	}
	return path, rawPath
}

// normalizeOrigin returns host lower-cased and without the scheme's
// default port.
func normalizeOrigin(scheme, host string) string {
	host = strings.ToLower(host)
	switch {
	case strings.EqualFold(scheme, "https"):
		return strings.TrimSuffix(host, ":443")
	case strings.EqualFold(scheme, "http"):
		return strings.TrimSuffix(host, ":80")
	}
	return host
}

// sameOrigin reports whether the absolute (or scheme-relative) URL u is on
// the route's upstream.
func (rt *route) sameOrigin(u *url.URL) bool {
	scheme := u.Scheme
	if scheme == "" {
		scheme = rt.upstream.Scheme
	}
	return strings.EqualFold(scheme, rt.upstream.Scheme) &&
		normalizeOrigin(scheme, u.Host) == rt.origin
}

// policyPath is the decoded path AEM receives for the inbound URL u, which
// a Guard judges.
func (rt *route) policyPath(u *url.URL) string {
	p, _ := rt.forwardPath(u)
	return p
}

// compileRoute validates r and prepares it for serving. Every problem is
// reported, each naming the route.
func compileRoute(i int, r Route) (*route, error) {
	where := fmt.Sprintf("route %d", i)
	if r.Name != "" {
		where = fmt.Sprintf("route %q", r.Name)
	}
	var problems []error
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf(where+": "+format, args...))
	}

	if !validName(r.Name) {
		add("name %q: want letters, digits, '-', '_' or '.'", r.Name)
	}
	rt := &route{
		name:        r.Name,
		strip:       r.StripPrefix,
		tokens:      r.Tokens,
		transport:   r.Transport,
		replayLimit: r.ReplayBodyLimit,
		fwdHost:     r.ForwardedHost == nil || *r.ForwardedHost,
		passCookies: r.PassCookies,
		guard:       r.Guard,
		maxBody:     r.MaxBodyBytes,
	}
	if r.MaxBodyBytes > 0 {
		rt.errBody = &rejection{status: http.StatusRequestEntityTooLarge, reason: "body_too_large",
			message: fmt.Sprintf("the request body is larger than this route's limit of %d bytes", r.MaxBodyBytes)}
	}
	if r.MaxConcurrent > 0 {
		rt.slots = make(chan struct{}, r.MaxConcurrent)
		rt.errBusy = &rejection{status: http.StatusServiceUnavailable, reason: "concurrency", retryAfter: time.Second,
			message: fmt.Sprintf("this route is serving its limit of %d requests at once; try again shortly", r.MaxConcurrent)}
	}
	if inv, ok := r.Tokens.(invalidator); ok {
		rt.invalidator = inv
	}
	if r.Authorization != "" {
		if r.Tokens != nil {
			add("both a token source and a fixed Authorization; give one")
		}
		rt.staticAuth = []string{r.Authorization.Reveal()}
	}
	if r.APIKey != "" || r.APIKeyFunc != nil {
		if r.APIKeyFunc != nil {
			rt.apiKeyFunc = r.APIKeyFunc
		} else {
			rt.apiKey = []string{r.APIKey}
		}
		rt.apiKeyPaths = r.APIKeyPaths
		if rt.apiKeyPaths == nil {
			rt.apiKeyPaths = []string{"/adobe/"}
		}
		for _, p := range rt.apiKeyPaths {
			if !strings.HasPrefix(p, "/") {
				add("API key path %q: must start with /", p)
			}
		}
	}
	if rt.replayLimit == 0 {
		rt.replayLimit = defaultReplayBodyLimit
	}
	if rt.replayLimit > maxReplayBodyLimit {
		add("replay body limit %d: at most %d bytes", r.ReplayBodyLimit, maxReplayBodyLimit)
	}

	if u, err := checkBaseURL(r.Upstream); err != nil {
		add("upstream: %v", err)
	} else {
		rt.upstream = u
		rt.origin = normalizeOrigin(u.Scheme, u.Host)
	}
	if r.ExternalURL != nil {
		if u, err := checkBaseURL(r.ExternalURL); err != nil {
			add("external URL: %v", err)
		} else {
			rt.external = u
		}
	}

	switch p := r.PathPrefix; {
	case p == "" || p == "/":
	case !cleanPath(p) || !safePathChars(p):
		add("path prefix %q: want a clean path starting with / (letters, digits and -._~$&+,:;=@ only, no // . or ..)", p)
	default:
		rt.prefix = strings.TrimSuffix(p, "/")
	}

	for _, h := range r.Hosts {
		p, err := parseHostPattern(h)
		if err != nil {
			add("host %q: %v", h, err)
			continue
		}
		rt.hosts = append(rt.hosts, p)
	}
	return rt, errors.Join(problems...)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkBaseURL checks that u is an http(s) origin with an optional clean
// path, and returns a copy whose path has no trailing slash.
func checkBaseURL(u *url.URL) (*url.URL, error) {
	switch {
	case u == nil:
		return nil, errors.New("missing")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%s: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("%s: no host", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("%s: user info is not allowed", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%s: query and fragment are not allowed", u.Redacted())
	case u.Path != "" && u.Path != "/" && (!cleanPath(u.Path) || !safePathChars(u.Path)):
		return nil, fmt.Errorf("%s: path must be clean and need no escaping", u.Redacted())
	}
	c := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
	return c, nil
}

func parseHostPattern(h string) (hostPattern, error) {
	if h == "" || strings.ContainsAny(h, "/@?# \t") {
		return hostPattern{}, errors.New("want a host name, optionally with :port")
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if host == "" || port == "" {
			return hostPattern{}, errors.New("want a host name, optionally with :port")
		}
		return hostPattern{host: strings.ToLower(h), hasPort: true}, nil
	}
	return hostPattern{host: strings.ToLower(h)}, nil
}

// sameHostsAndPrefix reports whether a and b would match exactly the same
// requests, so that the later one could never be chosen.
func sameHostsAndPrefix(a, b *route) bool {
	if a.prefix != b.prefix || len(a.hosts) != len(b.hosts) {
		return false
	}
	set := func(r *route) []hostPattern {
		s := slices.Clone(r.hosts)
		slices.SortFunc(s, func(x, y hostPattern) int { return strings.Compare(x.host, y.host) })
		return slices.Compact(s)
	}
	return slices.Equal(set(a), set(b))
}
