// Package guard answers "who may use a route, and for what": per-route
// inbound access control (a CIDR allow-list of client addresses, API keys,
// a required request header) and a method and path policy. The proxy asks a
// route's Guard about each request after routing it and before it fetches a
// token, so a refused request never reaches AEM.
//
// Paths are given to Check decoded and already clean (the proxy refuses "..",
// "//" and their encoded forms with 400 before routing), as AEM will receive
// them, that is after the route's strip_prefix. A path prefix matches the
// path itself and anything below it, where the byte after the prefix is "/",
// "." (Sling selectors and extension: /bin/querybuilder.json is
// /bin/querybuilder) or ";" (path parameters). Allowed paths compare
// case-sensitively, as AEM does; denied paths compare ASCII
// case-insensitively, so a deny list errs on the side of refusing. Deny
// always wins over allow.
package guard

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// DefaultAPIKeyHeader carries the client's API key when Options names none.
const DefaultAPIKeyHeader = "X-Aemproxy-Key"

// Options configure a Guard. The zero value lets everything through.
type Options struct {
	// AllowCIDRs, when set, admits only clients whose connection comes from
	// one of these networks (the address of the TCP peer; X-Forwarded-For is
	// never trusted). A bare address means that one address.
	AllowCIDRs []string
	// APIKeysFile, when set, requires a key from this file: one per line,
	// plain (at least 16 bytes) or "sha256:" and 64 hex digits; blank lines
	// and lines starting with "#" are ignored. The file is re-read when its
	// size or modification time changes (checked at most every
	// KeyCheckInterval) or when Reload is called.
	APIKeysFile string
	// APIKeyHeader carries the key; default DefaultAPIKeyHeader. The header
	// is removed from every request Check sees, so it never reaches AEM.
	APIKeyHeader string
	// RequiredHeader is "Name" (any non-empty value) or "Name: value" (that
	// exact value) that every request must carry: a browser cannot be made
	// to send a custom header cross-origin without CORS consent, so it
	// guards against request forgery (Vault's X-Vault-Request).
	RequiredHeader string

	// ReadOnly admits only GET, HEAD and OPTIONS.
	ReadOnly bool
	// AllowMethods, when set, admits only these methods.
	AllowMethods []string
	// DenyMethods refuses these methods (case-insensitively).
	DenyMethods []string
	// AllowPaths, when set, admits only paths under one of these prefixes.
	AllowPaths []string
	// DenyPaths refuses paths under any of these prefixes.
	DenyPaths []string

	// Logger notes key file reloads; it never sees a key.
	Logger zerolog.Logger
	// Now is the clock for key file checks; nil means time.Now.
	Now func() time.Time
}

// KeyCheckInterval is the longest a changed API keys file goes unnoticed
// without a Reload.
const KeyCheckInterval = 2 * time.Second

// Denial is why a request was refused: the HTTP status to answer, a stable
// reason (the error code and the metrics label) and a message for the
// client, which never repeats a key. Denials are shared between requests:
// do not modify one.
type Denial struct {
	Status  int
	Reason  string
	Message string
	// Challenge is set on a 401 only: the WWW-Authenticate value, which RFC
	// 9110 §11.6.1 requires on every 401. It names the scheme and the
	// header that carries the key, never a key.
	Challenge string
}

func (d *Denial) Error() string { return d.Message }

// Guard checks requests against one route's access rules and policy. It is
// safe for concurrent use.
type Guard struct {
	cidrs []netip.Prefix

	keys      *keyFile // nil: no API keys
	keyHeader string   // canonical
	missing   *Denial  // 401 naming keyHeader, with its challenge
	wrongKey  *Denial  // 403 naming keyHeader

	reqName, reqValue string // reqName "" means no required header

	readOnly     bool
	allowMethods []string
	denyMethods  []string
	allowPaths   []string
	denyPaths    []string
}

// New checks o and returns its Guard. It reports every problem at once. An
// API keys file is read now; one that cannot be read or holds no key is an
// error.
func New(o Options) (*Guard, error) {
	g := &Guard{readOnly: o.ReadOnly}
	var problems []error
	for _, s := range o.AllowCIDRs {
		p, err := ParseCIDR(s)
		if err != nil {
			problems = append(problems, fmt.Errorf("allow_cidrs: %w", err))
			continue
		}
		g.cidrs = append(g.cidrs, p)
	}
	if o.RequiredHeader != "" {
		name, value, err := ParseRequiredHeader(o.RequiredHeader)
		if err != nil {
			problems = append(problems, fmt.Errorf("required_header: %w", err))
		}
		g.reqName, g.reqValue = name, value
	}
	for _, m := range slices.Concat(o.AllowMethods, o.DenyMethods) {
		if err := CheckMethod(m); err != nil {
			problems = append(problems, err)
		}
	}
	g.allowMethods, g.denyMethods = o.AllowMethods, o.DenyMethods
	for _, p := range slices.Concat(o.AllowPaths, o.DenyPaths) {
		if err := CheckPath(p); err != nil {
			problems = append(problems, err)
		}
	}
	g.allowPaths, g.denyPaths = normalizePrefixes(o.AllowPaths), normalizePrefixes(o.DenyPaths)

	g.keyHeader = http.CanonicalHeaderKey(o.APIKeyHeader)
	if g.keyHeader == "" {
		g.keyHeader = DefaultAPIKeyHeader
	}
	if !validToken(g.keyHeader) {
		problems = append(problems, fmt.Errorf("api_key_header: %q is not a header name", o.APIKeyHeader))
	}
	// A token needs no escaping inside the quoted-string of the
	// challenge's header parameter.
	g.missing = &Denial{Status: http.StatusUnauthorized, Reason: "api_key_missing",
		Message:   "this route needs an API key: send it in the " + g.keyHeader + " header",
		Challenge: `APIKey realm="aemproxy", header="` + g.keyHeader + `"`}
	g.wrongKey = &Denial{Status: http.StatusForbidden, Reason: "api_key_invalid",
		Message: "the API key in the " + g.keyHeader + " header is not valid for this route"}
	if o.APIKeysFile != "" {
		now := o.Now
		if now == nil {
			now = time.Now
		}
		k, err := newKeyFile(o.APIKeysFile, now, o.Logger)
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("api_keys_file: %w", err))
		case len(k.digests.Current()) == 0:
			problems = append(problems, fmt.Errorf("api_keys_file: %s holds no key, so every request would be refused", o.APIKeysFile))
		}
		g.keys = k
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return g, nil
}

// Restricts reports whether the guard limits who may connect: an
// allow-list or API keys.
func (g *Guard) Restricts() bool { return g != nil && (len(g.cidrs) > 0 || g.keys != nil) }

// Reload re-reads the API keys file now. On error the current keys stay.
func (g *Guard) Reload() error {
	if g == nil || g.keys == nil {
		return nil
	}
	return g.keys.Reload()
}

// Check returns nil if r may go on to AEM with the given path (decoded,
// clean, as AEM will receive it), or why not. It removes the API key header
// from r, whatever the outcome.
func (g *Guard) Check(r *http.Request, path string) *Denial {
	if len(g.cidrs) > 0 && !g.allowedClient(r.RemoteAddr) {
		return errClient
	}
	if g.reqName != "" {
		v := r.Header.Get(g.reqName)
		if v == "" || (g.reqValue != "" && v != g.reqValue) {
			return g.requiredHeaderDenial()
		}
	}
	if g.keys != nil {
		presented := r.Header[g.keyHeader]
		delete(r.Header, g.keyHeader)
		switch {
		case len(presented) == 0 || presented[0] == "":
			return g.missing
		case len(presented) > 1 || !g.keys.valid(presented[0]):
			return g.wrongKey
		}
	}
	if !g.allowedMethod(r.Method) {
		return &Denial{Status: http.StatusForbidden, Reason: "policy_denied", Message: "this route's policy does not allow the method " + r.Method}
	}
	if !g.AllowedPath(path) {
		return errPath
	}
	return nil
}

var (
	errClient = &Denial{Status: http.StatusForbidden, Reason: "client_not_allowed",
		Message: "this route does not accept requests from your network address"}
	errPath = &Denial{Status: http.StatusForbidden, Reason: "policy_denied",
		Message: "this route's policy does not allow this path"}
)

func (g *Guard) requiredHeaderDenial() *Denial {
	want := g.reqName
	if g.reqValue != "" {
		want += ": " + g.reqValue
	}
	return &Denial{Status: http.StatusForbidden, Reason: "required_header_missing",
		Message: "this route needs the request header " + want}
}

func (g *Guard) allowedClient(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range g.cidrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var readOnlyMethods = []string{http.MethodGet, http.MethodHead, http.MethodOptions}

func (g *Guard) allowedMethod(m string) bool {
	for _, d := range g.denyMethods {
		// Case-insensitive: a deny list should not be dodged with "delete".
		if strings.EqualFold(d, m) {
			return false
		}
	}
	if g.readOnly && !slices.Contains(readOnlyMethods, m) {
		return false
	}
	return len(g.allowMethods) == 0 || slices.Contains(g.allowMethods, m)
}

// AllowedPath reports whether the path policy admits the clean, decoded
// path p.
func (g *Guard) AllowedPath(p string) bool {
	for _, d := range g.denyPaths {
		if underPrefix(p, d, true) {
			return false
		}
	}
	if len(g.allowPaths) == 0 {
		return true
	}
	for _, a := range g.allowPaths {
		if underPrefix(p, a, false) {
			return true
		}
	}
	return false
}

// underPrefix reports whether p is prefix or below it: the byte after the
// prefix is "/", "." or ";". prefix has no trailing slash ("" is the root).
func underPrefix(p, prefix string, fold bool) bool {
	if len(p) < len(prefix) {
		return false
	}
	head := p[:len(prefix)]
	if fold && !asciiEqualFold(head, prefix) || !fold && head != prefix {
		return false
	}
	if len(p) == len(prefix) {
		return true
	}
	switch p[len(prefix)] {
	case '/', '.', ';':
		return true
	}
	return false
}

// asciiEqualFold is strings.EqualFold for ASCII only: Unicode folding would
// equate "ſ" (U+017F) with "s", which AEM does not.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func normalizePrefixes(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, strings.TrimRight(p, "/"))
	}
	return out
}

// ParseCIDR parses an allow_cidrs entry: a network such as 10.0.0.0/8 or
// fd00::/8, or a bare address for that address alone.
func ParseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR notation (e.g. 10.0.0.0/8)", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write IPv4 networks in IPv4 notation", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a network in CIDR notation", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseRequiredHeader splits "Name" or "Name: value".
func ParseRequiredHeader(s string) (name, value string, err error) {
	name, value, _ = strings.Cut(s, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !validToken(name) {
		return "", "", fmt.Errorf("%q: want a header name, optionally followed by \": value\"", s)
	}
	return http.CanonicalHeaderKey(name), value, nil
}

// Methods a policy may name: HTTP's and the WebDAV ones AEM serves.
var knownMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodTrace,
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
}

// CheckMethod reports whether m is a method a policy may name.
func CheckMethod(m string) error {
	if !slices.Contains(knownMethods, m) {
		return fmt.Errorf("method %q: want one of %s (upper case)", m, strings.Join(knownMethods, ", "))
	}
	return nil
}

// CheckPath reports whether p may be a policy path prefix: it starts with
// "/" and is clean, so that it can match the clean paths Check is given.
func CheckPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q: must start with /", p)
	}
	trimmed := strings.TrimRight(p, "/")
	for _, seg := range strings.Split(trimmed, "/")[1:] {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("path %q: must be clean (no //, . or .. segments)", p)
		}
	}
	return nil
}

// CheckHeaderName reports whether s can be a header name.
func CheckHeaderName(s string) error {
	if !validToken(s) {
		return fmt.Errorf("%q is not a header name", s)
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token, as header names are.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// digest is the SHA-256 of a key; keys are compared by digest so that the
// comparison takes the same time whatever the key's length.
func digest(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

func equalDigest(a, b *[sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
