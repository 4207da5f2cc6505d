// Package config reads and checks aemproxy's YAML configuration.
//
// A file is decoded over Default() with unknown keys rejected, then Validate
// reports every problem at once. Secrets never live in this file: routes name
// credentials files, whose contents are read by the program at start.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aemproxy/aemproxy/internal/egress"
	"github.com/aemproxy/aemproxy/internal/guard"
)

// Config is the whole configuration of one aemproxy process.
type Config struct {
	// Listen is the default proxy listener; routes without their own
	// listen address are served here.
	Listen string `yaml:"listen"`
	// AdminListen serves /healthz, /readyz and /metrics.
	AdminListen string `yaml:"admin_listen"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM before connections are closed.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ShutdownDelay keeps serving, with /readyz already 503, for this long
	// after SIGTERM so that load balancers stop sending new requests first.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
	Log           Log           `yaml:"log"`
	Server        Server        `yaml:"server"`
	// TLS, when cert_file is set, serves the proxy listeners over HTTPS.
	TLS    TLS     `yaml:"tls"`
	IMS    IMS     `yaml:"ims"`
	Routes []Route `yaml:"routes"`
}

// Log selects the log level and format.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
	// FlushInterval is the longest an info or debug line (the access log)
	// waits in a buffer before it is written, when logs go to a file or
	// pipe; warnings and errors are written at once. 0 writes every line at
	// once.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// Server holds limits for the proxy listeners.
type Server struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
}

// TLS serves the proxy listeners (not the admin listener) over HTTPS,
// optionally requiring client certificates. The files are re-read when they
// change and on SIGHUP.
type TLS struct {
	// CertFile is the PEM server certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of the leaf certificate.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile is a PEM bundle of the CAs whose client certificates
	// are accepted.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is none, request (verify a certificate if the client
	// sends one) or require; "" means require when ClientCAFile is set and
	// none otherwise.
	ClientAuth string `yaml:"client_auth"`
}

// Enabled reports whether the proxy listeners serve HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// EffectiveClientAuth resolves the "" default of ClientAuth.
func (t TLS) EffectiveClientAuth() string {
	switch {
	case t.ClientAuth != "":
		return t.ClientAuth
	case t.ClientCAFile != "":
		return "require"
	}
	return "none"
}

// validate checks the TLS keys, reading the files to report a missing file,
// a key that does not match its certificate, or a CA file without
// certificates. It changes nothing.
func (t TLS) validate() []error {
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if !t.Enabled() {
		if t.ClientCAFile != "" || t.ClientAuth != "" {
			add("tls: client_ca_file and client_auth need tls.cert_file and tls.key_file")
		}
		return problems
	}
	pairReadable := true
	for _, f := range []struct{ key, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" {
			add("tls.%s: missing; tls needs both cert_file and key_file", f.key)
			pairReadable = false
		} else if err := checkReadable(f.path); err != nil {
			add("tls.%s: %v", f.key, err)
			pairReadable = false
		}
	}
	if pairReadable {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			add("tls: cert_file %s and key_file %s: %v", t.CertFile, t.KeyFile, err)
		}
	}
	if t.ClientCAFile != "" {
		if data, err := os.ReadFile(t.ClientCAFile); err != nil {
			add("tls.client_ca_file: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
			add("tls.client_ca_file: %s holds no PEM certificate", t.ClientCAFile)
		}
	}
	switch t.ClientAuth {
	case "", "none":
		if t.ClientAuth == "none" && t.ClientCAFile != "" {
			add("tls.client_auth: none, but client_ca_file is set; remove one")
		}
	case "request", "require":
		if t.ClientCAFile == "" {
			add("tls.client_auth: %s needs client_ca_file, the CAs client certificates are verified against", t.ClientAuth)
		}
	default:
		add("tls.client_auth: %q is not one of none, request, require", t.ClientAuth)
	}
	return problems
}

// IMS configures how aemproxy reaches Adobe IMS.
type IMS struct {
	// URL overrides where IMS requests go (a test server, an egress gateway).
	// It never changes the JWT audience, which stays the credentials' own
	// imsEndpoint.
	URL *URL `yaml:"url"`
	// CAFile is a PEM bundle trusted in addition to the system roots.
	CAFile string `yaml:"ca_file"`
	// ClientCertFile and ClientKeyFile are a PEM client certificate (chain,
	// leaf first) and its unencrypted key, presented when IMS or an egress
	// gateway in front of it requires mutual TLS. Both or neither; re-read
	// when they change.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// ServerName is sent as SNI and verified in IMS's certificate instead
	// of the host of the IMS URL.
	ServerName string `yaml:"server_name"`
	// ProxyURL is the outbound HTTP proxy for IMS; empty means the
	// HTTPS_PROXY/NO_PROXY environment, "direct" means none.
	ProxyURL string `yaml:"proxy_url"`
	// Timeout bounds one IMS request.
	Timeout time.Duration `yaml:"timeout"`
	// JWTLifetime is the exp of the signed JWT (5m by default, at most 24h).
	JWTLifetime time.Duration `yaml:"jwt_lifetime"`
}

// Route sends the requests it matches to one AEM host with one credential.
type Route struct {
	Name string `yaml:"name"`
	// Upstream is the AEM origin, e.g. https://author-p1-e2.adobeaemcloud.com.
	Upstream *URL `yaml:"upstream"`
	// Credentials is the path of the credentials file for this route: AEM
	// service credentials, an OAuth server-to-server credential (Developer
	// Console workspace JSON or client_id/client_secret/scopes), a local
	// development token, or {"username","password"} for HTTP Basic. The
	// kind is detected from the content. The file is watched and reloaded.
	Credentials string `yaml:"credentials"`
	// CredentialsKind states the kind instead of detecting it:
	// service_credentials, oauth_server_to_server, dev_token, basic,
	// sdk_defaults (HTTP Basic admin:admin, the local AEM SDK's default) or
	// none (forward without Authorization).
	CredentialsKind string `yaml:"credentials_kind"`
	// OAuthCredential picks a credential by name from a workspace JSON that
	// holds several.
	OAuthCredential string `yaml:"oauth_credential"`
	// Basic gives HTTP Basic credentials without a credentials file.
	Basic Basic `yaml:"basic"`
	// APIKey controls X-Api-Key, which AEM's OpenAPI-based APIs need: ""
	// sends the OAuth client id on APIKeyPaths for OAuth credentials and
	// nothing otherwise; "off" never sends one; any other value is sent as
	// the key.
	APIKey string `yaml:"api_key"`
	// APIKeyPaths are the path prefixes that get X-Api-Key; default
	// [/adobe/].
	APIKeyPaths []string `yaml:"api_key_paths"`
	// Token is a local development token given in the environment
	// (AEMPROXY_TOKEN), never in the file.
	Token string `yaml:"-"`
	// Listen serves this route on its own address instead of the default
	// listener.
	Listen string `yaml:"listen"`
	// Hosts, when set, restricts the route to requests whose Host header is
	// one of these names.
	Hosts []string `yaml:"hosts"`
	// PathPrefix restricts the route to paths under this prefix.
	PathPrefix string `yaml:"path_prefix"`
	// StripPrefix removes PathPrefix before forwarding.
	StripPrefix bool `yaml:"strip_prefix"`
	// ExternalURL is the proxy's address as clients know it, used when a
	// same-origin Location header is rewritten. Default: the request's own.
	ExternalURL *URL `yaml:"external_url"`
	// ForwardedHost sends X-Forwarded-Host (the host the client used).
	ForwardedHost *bool `yaml:"forwarded_host"`
	// PassCookies lets Cookie and Set-Cookie through; off by default because
	// a shared proxy must not hand one caller's AEM session to another.
	PassCookies bool `yaml:"pass_cookies"`
	// CSRF fetches AEM's CSRF token (/libs/granite/csrf/token.json) with
	// the route's credential and sends it as CSRF-Token on POST, PUT, PATCH
	// and DELETE; the client's own CSRF-Token is replaced.
	CSRF bool `yaml:"csrf"`
	// ReplayBodyLimit is the largest request body buffered so that a request
	// can be replayed after a 401; -1 disables buffering.
	ReplayBodyLimit int64 `yaml:"replay_body_limit"`
	// CAFile is a PEM bundle trusted for this upstream in addition to the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// ClientCertFile and ClientKeyFile are a PEM client certificate (chain,
	// leaf first) and its unencrypted key, presented when the upstream (a
	// dispatcher, an egress gateway) requires mutual TLS. Both or neither;
	// re-read when they change.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// ServerName is sent as SNI and verified in the upstream's certificate
	// instead of the upstream URL's host (an IP address, an internal load
	// balancer).
	ServerName string `yaml:"server_name"`
	// ProxyURL is the outbound HTTP proxy for this upstream; empty means the
	// HTTPS_PROXY/NO_PROXY environment, "direct" means none.
	ProxyURL string `yaml:"proxy_url"`
	// ResponseHeaderTimeout bounds the wait for AEM's response headers.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// Access restricts who may use the route.
	Access Access `yaml:"access"`
	// Policy restricts the methods and paths the route forwards.
	Policy Policy `yaml:"policy"`
	// Limits bound the request bodies and concurrency of the route.
	Limits Limits `yaml:"limits"`
}

// Access is a route's inbound access control; every part is optional and
// they combine (all must pass). See package guard.
type Access struct {
	// AllowCIDRs admits only clients connecting from these networks (or
	// bare addresses). Empty admits any address.
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// APIKeysFile requires one of the keys in this file (one per line,
	// plain or sha256:<hex>, # comments); it is re-read when it changes.
	APIKeysFile string `yaml:"api_keys_file"`
	// APIKeyHeader is the request header carrying the key; it is removed
	// before forwarding.
	APIKeyHeader string `yaml:"api_key_header"`
	// RequiredHeader is "Name" or "Name: value" that every request must
	// carry, e.g. "X-Requested-By: aemproxy".
	RequiredHeader string `yaml:"required_header"`
}

// Policy limits the methods and paths a route forwards. Paths are prefixes
// of the decoded path AEM receives; deny wins over allow.
type Policy struct {
	// ReadOnly admits only GET, HEAD and OPTIONS.
	ReadOnly     bool     `yaml:"read_only"`
	AllowMethods []string `yaml:"allow_methods"`
	DenyMethods  []string `yaml:"deny_methods"`
	AllowPaths   []string `yaml:"allow_paths"`
	DenyPaths    []string `yaml:"deny_paths"`
}

// IsZero reports whether the policy restricts nothing.
func (p Policy) IsZero() bool {
	return !p.ReadOnly && len(p.AllowMethods)+len(p.DenyMethods)+len(p.AllowPaths)+len(p.DenyPaths) == 0
}

// Limits bound what one route takes on; 0 means no limit.
type Limits struct {
	// MaxBodyBytes is the largest request body accepted (413 beyond).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxConcurrent is the most requests served at once (503 beyond).
	MaxConcurrent int `yaml:"max_concurrent"`
}

// Basic is HTTP Basic authentication for a local AEM SDK. The password
// comes from a file or an environment variable, never from this file.
type Basic struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// IsZero reports whether no Basic credentials are configured.
func (b Basic) IsZero() bool { return b == Basic{} }

// Credential kinds a route may state in credentials_kind.
var credentialKinds = []string{"service_credentials", "oauth_server_to_server", "dev_token", "basic", "sdk_defaults", "none"}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		AdminListen:     "127.0.0.1:9090",
		ShutdownTimeout: 30 * time.Second,
		Log:             Log{Level: "info", Format: "json", FlushInterval: 100 * time.Millisecond},
		Server: Server{
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
		},
		IMS: IMS{
			Timeout:     30 * time.Second,
			JWTLifetime: 5 * time.Minute,
		},
	}
}

// RouteDefaults fills the per-route defaults a route entry leaves out.
func RouteDefaults(r Route) Route {
	if r.ResponseHeaderTimeout == 0 {
		r.ResponseHeaderTimeout = 60 * time.Second
	}
	if r.ReplayBodyLimit == 0 {
		r.ReplayBodyLimit = 64 << 10
	}
	if r.PathPrefix == "" {
		r.PathPrefix = "/"
	}
	if r.Access.APIKeyHeader == "" {
		r.Access.APIKeyHeader = guard.DefaultAPIKeyHeader
	}
	return r
}

// Load reads the file at path over Default() and validates the result.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := Decode(bytes.NewReader(data))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

// resolvePaths makes the file paths a config file names relative to the
// directory the file is in, so that it means the same from any working
// directory.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.IMS.CAFile)
	abs(&c.IMS.ClientCertFile)
	abs(&c.IMS.ClientKeyFile)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.TLS.ClientCAFile)
	for i := range c.Routes {
		abs(&c.Routes[i].Credentials)
		abs(&c.Routes[i].Basic.PasswordFile)
		abs(&c.Routes[i].CAFile)
		abs(&c.Routes[i].ClientCertFile)
		abs(&c.Routes[i].ClientKeyFile)
		abs(&c.Routes[i].Access.APIKeysFile)
	}
}

// Decode reads YAML over Default(), rejecting unknown keys. It does not
// validate; call Validate once overrides from flags and environment are in.
func Decode(r io.Reader) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // an empty file means all defaults
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			problems := make([]error, 0, len(te.Errors))
			for _, msg := range te.Errors {
				problems = append(problems, errors.New(friendlyYAML(msg)))
			}
			return Config{}, errors.Join(problems...)
		}
		return Config{}, fmt.Errorf("not valid YAML: %w", err)
	}
	for i := range c.Routes {
		c.Routes[i] = RouteDefaults(c.Routes[i])
	}
	return c, nil
}

// friendlyYAML names the YAML section instead of the Go type in yaml.v3's
// messages ("field foo not found in type config.Route").
func friendlyYAML(msg string) string {
	r := strings.NewReplacer(
		"not found in type config.Config", "is not a known top-level key",
		"not found in type config.Route", "is not a known key of a route",
		"not found in type config.IMS", "is not a known key of ims",
		"not found in type config.Log", "is not a known key of log",
		"not found in type config.Server", "is not a known key of server",
		"not found in type config.TLS", "is not a known key of tls",
		"not found in type config.Access", "is not a known key of a route's access",
		"not found in type config.Policy", "is not a known key of a route's policy",
		"not found in type config.Limits", "is not a known key of a route's limits",
		"into time.Duration", "into a duration (write e.g. 30s, 5m, 1h)",
		"field ", "key ",
	)
	return r.Replace(msg)
}

// URL is an absolute URL in the configuration.
type URL struct{ url.URL }

// UnmarshalYAML parses the scalar as a URL, reporting a bad one as a type
// error so that the decoder goes on and reports every problem at once.
func (u *URL) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	p, err := ParseURL(s)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*u = *p
	return nil
}

// MarshalYAML renders the URL as a string.
func (u URL) MarshalYAML() (any, error) { return u.String(), nil }

// ParseURL parses an absolute http or https URL. Its errors never repeat a
// password the URL may hold.
func ParseURL(s string) (*URL, error) {
	shown := redactUserinfo(s)
	p, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", shown)
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return nil, fmt.Errorf("%q: want an http:// or https:// URL", shown)
	}
	if p.Host == "" {
		return nil, fmt.Errorf("%q: no host", shown)
	}
	return &URL{*p}, nil
}

// redactUserinfo hides whatever stands between "://" and the last "@" of
// the authority.
func redactUserinfo(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return s
	}
	return s[:i+3] + "***" + rest[at:]
}

// checkOrigin reports what keeps u from being a bare origin.
func checkOrigin(u *URL) error {
	switch {
	case u.User != nil:
		return fmt.Errorf("%s: user info is not allowed here; credentials belong in a credentials file", u.Redacted())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%s must be an origin (scheme://host[:port]) with no path, query or fragment", u.Redacted())
	}
	return nil
}

// EgressTLS returns the TLS settings of connections to IMS.
func (i IMS) EgressTLS() egress.TLS {
	return egress.TLS{CAFile: i.CAFile, CertFile: i.ClientCertFile, KeyFile: i.ClientKeyFile, ServerName: i.ServerName}
}

// EgressTLS returns the TLS settings of connections to the route's
// upstream.
func (r Route) EgressTLS() egress.TLS {
	return egress.TLS{CAFile: r.CAFile, CertFile: r.ClientCertFile, KeyFile: r.ClientKeyFile, ServerName: r.ServerName}
}

// checkEgressTLS checks the ca_file, client_cert_file, client_key_file and
// server_name of ims or of a route (where), reading the files as they will
// be read at start: a client certificate must come with its unencrypted
// key and match it.
func checkEgressTLS(where string, t egress.TLS) []error {
	var problems []error
	for _, err := range t.Check() {
		// err begins with the setting's key.
		problems = append(problems, fmt.Errorf("%s.%w", where, err))
	}
	return problems
}

// checkProxyURL accepts "", "direct" or an http(s) proxy URL.
func checkProxyURL(s string) error {
	if s == "" || s == "direct" {
		return nil
	}
	if _, err := ParseURL(s); err != nil {
		return fmt.Errorf("%v (or write \"direct\" for no proxy)", err)
	}
	return nil
}

// Validate reports every problem in c at once. It changes nothing.
func (c *Config) Validate() error {
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	if err := checkHostPort(c.Listen); err != nil {
		add("listen: %v", err)
	}
	if err := checkHostPort(c.AdminListen); err != nil {
		add("admin_listen: %v", err)
	}
	if c.Listen != "" && c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		add("admin_listen: %s is also the proxy listen address; use another port", c.AdminListen)
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout: must be positive, got %v", c.ShutdownTimeout)
	}
	if c.ShutdownDelay < 0 {
		add("shutdown_delay: must not be negative, got %v", c.ShutdownDelay)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		add("log.format: %q is not one of json, console", c.Log.Format)
	}
	if c.Log.FlushInterval < 0 || c.Log.FlushInterval > time.Minute {
		add("log.flush_interval: must be between 0 (no buffering) and 1m, got %v", c.Log.FlushInterval)
	}
	if c.Server.ReadHeaderTimeout <= 0 {
		add("server.read_header_timeout: must be positive, got %v", c.Server.ReadHeaderTimeout)
	}
	if c.Server.IdleTimeout <= 0 {
		add("server.idle_timeout: must be positive, got %v", c.Server.IdleTimeout)
	}
	if c.Server.MaxHeaderBytes < 4<<10 || c.Server.MaxHeaderBytes > 1<<20 {
		add("server.max_header_bytes: must be between 4096 and 1048576, got %d", c.Server.MaxHeaderBytes)
	}
	problems = append(problems, c.TLS.validate()...)
	if c.IMS.Timeout <= 0 {
		add("ims.timeout: must be positive, got %v", c.IMS.Timeout)
	}
	if c.IMS.JWTLifetime < 10*time.Second || c.IMS.JWTLifetime > 24*time.Hour {
		add("ims.jwt_lifetime: must be between 10s and 24h, got %v", c.IMS.JWTLifetime)
	}
	if u := c.IMS.URL; u != nil && (u.User != nil || u.RawQuery != "" || u.Fragment != "") {
		add("ims.url: %s: want a base URL with no user info, query or fragment", u.Redacted())
	}
	if err := checkProxyURL(c.IMS.ProxyURL); err != nil {
		add("ims.proxy_url: %v", err)
	}
	problems = append(problems, checkEgressTLS("ims", c.IMS.EgressTLS())...)

	if len(c.Routes) == 0 {
		add("routes: none configured; give --upstream (and --credentials) or a routes list in the config file")
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		where := fmt.Sprintf("routes[%d]", i)
		if r.Name != "" {
			where = fmt.Sprintf("routes[%d] (%s)", i, r.Name)
		}
		switch {
		case r.Name == "":
			add("%s.name: empty; every route needs a name for logs and metrics", where)
		case !routeName.MatchString(r.Name):
			add("%s.name: %q may hold only letters, digits, '-', '_' and '.'", where, r.Name)
		default:
			if j, dup := names[r.Name]; dup {
				add("%s.name: %q is also the name of routes[%d]", where, r.Name, j)
			}
			names[r.Name] = i
		}
		if r.Upstream == nil {
			add("%s.upstream: missing; give the AEM origin, e.g. https://author-p123-e456.adobeaemcloud.com", where)
		} else if err := checkOrigin(r.Upstream); err != nil {
			add("%s.upstream: %v", where, err)
		}
		if r.ExternalURL != nil && r.ExternalURL.User != nil {
			add("%s.external_url: %s: user info is not allowed", where, r.ExternalURL.Redacted())
		}
		problems = append(problems, r.validateCredentials(where)...)
		if r.Listen != "" {
			if err := checkHostPort(r.Listen); err != nil {
				add("%s.listen: %v", where, err)
			} else if r.Listen == c.AdminListen {
				add("%s.listen: %s is the admin address", where, r.Listen)
			}
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			add("%s.path_prefix: %q must start with /", where, r.PathPrefix)
		} else if strings.Contains(r.PathPrefix, "..") || strings.Contains(r.PathPrefix, "//") {
			add("%s.path_prefix: %q must be a clean path (no .. or //)", where, r.PathPrefix)
		}
		if r.StripPrefix && r.PathPrefix == "/" {
			add("%s.strip_prefix: set, but path_prefix is /; nothing to strip", where)
		}
		for j, h := range r.Hosts {
			if !hostName.MatchString(h) {
				add("%s.hosts[%d]: %q is not a host name (optionally with :port)", where, j, h)
			}
		}
		if r.ReplayBodyLimit < -1 || r.ReplayBodyLimit > 16<<20 {
			add("%s.replay_body_limit: must be -1 (off) or up to 16777216 bytes, got %d", where, r.ReplayBodyLimit)
		}
		problems = append(problems, checkEgressTLS(where, r.EgressTLS())...)
		if err := checkProxyURL(r.ProxyURL); err != nil {
			add("%s.proxy_url: %v", where, err)
		}
		if r.ResponseHeaderTimeout <= 0 {
			add("%s.response_header_timeout: must be positive, got %v", where, r.ResponseHeaderTimeout)
		}
		problems = append(problems, r.validateGuard(where)...)
	}
	return errors.Join(problems...)
}

// validateCredentials checks the keys that choose a route's credential.
func (r *Route) validateCredentials(where string) []error {
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	kind := r.CredentialsKind
	if kind != "" && !slices.Contains(credentialKinds, kind) {
		add("%s.credentials_kind: %q is not one of %s", where, kind, strings.Join(credentialKinds, ", "))
	}
	if r.Credentials != "" {
		if err := checkReadable(r.Credentials); err != nil {
			add("%s.credentials: %v", where, err)
		}
	}
	given := 0
	for _, set := range []bool{r.Credentials != "", r.Token != "", !r.Basic.IsZero()} {
		if set {
			given++
		}
	}
	if given > 1 {
		add("%s: give one of credentials, basic and AEMPROXY_TOKEN, not several", where)
	}
	switch kind {
	case "none", "sdk_defaults":
		if given > 0 {
			add("%s.credentials_kind: %s takes no credentials, but some are given", where, kind)
		}
	case "basic":
		if r.Credentials == "" && r.Basic.IsZero() {
			add("%s.basic: credentials_kind is basic; give basic.username with basic.password_file or basic.password_env, or a credentials file with username and password", where)
		}
	case "dev_token":
		if r.Credentials == "" && r.Token == "" {
			add("%s.credentials: credentials_kind is dev_token; give the token file (or AEMPROXY_TOKEN)", where)
		}
	case "service_credentials", "oauth_server_to_server":
		if r.Credentials == "" {
			add("%s.credentials: credentials_kind is %s; give the credentials file", where, kind)
		}
	}
	if !r.Basic.IsZero() {
		b := r.Basic
		if b.Username == "" {
			add("%s.basic.username: empty", where)
		}
		if (b.PasswordFile == "") == (b.PasswordEnv == "") {
			add("%s.basic: give exactly one of password_file and password_env", where)
		}
		if b.PasswordFile != "" {
			if err := checkReadable(b.PasswordFile); err != nil {
				add("%s.basic.password_file: %v", where, err)
			}
		}
	}
	if r.OAuthCredential != "" && kind != "" && kind != "oauth_server_to_server" {
		add("%s.oauth_credential: only applies to oauth_server_to_server credentials", where)
	}
	for j, p := range r.APIKeyPaths {
		if !strings.HasPrefix(p, "/") {
			add("%s.api_key_paths[%d]: %q must start with /", where, j, p)
		}
	}
	return problems
}

// validateGuard checks a route's access, policy and limits.
func (r *Route) validateGuard(where string) []error {
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	a := r.Access
	for j, s := range a.AllowCIDRs {
		if _, err := guard.ParseCIDR(s); err != nil {
			add("%s.access.allow_cidrs[%d]: %v", where, j, err)
		}
	}
	if a.APIKeysFile != "" {
		if err := checkReadable(a.APIKeysFile); err != nil {
			add("%s.access.api_keys_file: %v", where, err)
		}
	}
	if err := guard.CheckHeaderName(a.APIKeyHeader); err != nil {
		add("%s.access.api_key_header: %v", where, err)
	}
	if a.RequiredHeader != "" {
		if _, _, err := guard.ParseRequiredHeader(a.RequiredHeader); err != nil {
			add("%s.access.required_header: %v", where, err)
		}
	}
	p := r.Policy
	for _, l := range []struct {
		key   string
		list  []string
		check func(string) error
	}{
		{"allow_methods", p.AllowMethods, guard.CheckMethod},
		{"deny_methods", p.DenyMethods, guard.CheckMethod},
		{"allow_paths", p.AllowPaths, guard.CheckPath},
		{"deny_paths", p.DenyPaths, guard.CheckPath},
	} {
		for j, v := range l.list {
			if err := l.check(v); err != nil {
				add("%s.policy.%s[%d]: %v", where, l.key, j, err)
			}
		}
	}
	if r.Limits.MaxBodyBytes < 0 {
		add("%s.limits.max_body_bytes: must not be negative (0 means no limit), got %d", where, r.Limits.MaxBodyBytes)
	}
	if r.Limits.MaxConcurrent < 0 {
		add("%s.limits.max_concurrent: must not be negative (0 means no limit), got %d", where, r.Limits.MaxConcurrent)
	}
	return problems
}

var (
	routeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	hostName  = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:[0-9]{1,5})?$`)
)

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:8080)", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return fmt.Errorf("%q: %q is not an IP address or host name", addr, host)
	}
	return nil
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory, want a file", path)
	}
	return nil
}
