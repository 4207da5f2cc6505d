package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/egress"
	"github.com/aemproxy/aemproxy/internal/ims"
	"github.com/aemproxy/aemproxy/internal/proxy"
)

// imsDeps is what every route's credential shares: where IMS is and how to
// reach it.
type imsDeps struct {
	base        *url.URL // nil: https://{imsEndpoint} of each credential
	client      *http.Client
	jwtLifetime time.Duration
	// tls is the loaded TLS settings for IMS (client certificate included),
	// reloaded on SIGHUP; nil when they could not be loaded.
	tls *egress.Client
}

// newIMSDeps builds the IMS client. log receives the reloads of the IMS
// client certificate.
func newIMSDeps(cfg config.Config, log zerolog.Logger) (imsDeps, error) {
	d := imsDeps{jwtLifetime: cfg.IMS.JWTLifetime}
	if cfg.IMS.URL != nil {
		d.base = &cfg.IMS.URL.URL
	}
	proxyURL, direct, err := egressProxy(cfg.IMS.ProxyURL)
	if err != nil {
		return d, fmt.Errorf("ims.proxy_url: %w", err)
	}
	tlsc, err := cfg.IMS.EgressTLS().Load(time.Now, log.With().Str("egress", "ims").Logger())
	if err != nil {
		return d, prefixProblems("ims.", err)
	}
	d.tls = tlsc
	client, err := ims.NewHTTPClient(ims.HTTPClientOptions{TLSConfig: tlsc.Config(), ProxyURL: proxyURL, Direct: direct, Timeout: cfg.IMS.Timeout})
	if err != nil {
		return d, fmt.Errorf("ims: %w", err)
	}
	d.client = client
	return d, nil
}

// upstreamTLS loads the TLS settings of a route's upstream and logs a
// client certificate that expires soon or has expired.
func upstreamTLS(rc config.Route, log zerolog.Logger) (*egress.Client, error) {
	log = log.With().Str("egress", "upstream").Str("route", rc.Name).Logger()
	c, err := rc.EgressTLS().Load(time.Now, log)
	if err != nil {
		return nil, prefixProblems("route "+rc.Name+": ", err)
	}
	logClientCertExpiry(log, rc.ClientCertFile, c.NotAfter(), time.Now())
	return c, nil
}

// clientCertWarning is how long before its end a client certificate is
// warned about, at start and by check.
const clientCertWarning = 30 * 24 * time.Hour

// logClientCertExpiry logs, at start, a client certificate that has expired
// (error) or expires within 30 days (warning): the servers that require it
// will refuse aemproxy's connections.
func logClientCertExpiry(log zerolog.Logger, certFile string, notAfter, now time.Time) {
	switch left := notAfter.Sub(now); {
	case notAfter.IsZero():
	case left <= 0:
		log.Error().Str("cert_file", certFile).Time("not_after", notAfter).
			Msg("client certificate has expired; servers that require it refuse the connection: renew it (it is reloaded without a restart)")
	case left < clientCertWarning:
		log.Warn().Str("cert_file", certFile).Time("not_after", notAfter).Int("days_left", int(left.Hours()/24)).
			Msg("client certificate expires within 30 days: renew it (it is reloaded without a restart)")
	}
}

// checkEgress is the part of check that reports the dates of the client
// certificates presented to IMS and to the upstreams: a problem when one
// has expired, a warning within 30 days of its end. It writes what is fine
// to w. A pair that does not load is left to config validation, which
// names the problem already.
func checkEgress(cfg config.Config, now time.Time, w io.Writer) []string {
	var problems []string
	report := func(what, key string, t egress.TLS) {
		if t.CertFile == "" {
			return
		}
		c, err := t.Load(nil, zerolog.Nop())
		if err != nil {
			return
		}
		na := c.NotAfter()
		switch left := na.Sub(now); {
		case left <= 0:
			problems = append(problems, fmt.Sprintf("%s (%s %s) expired at %s; renew it (it is reloaded without a restart)", what, key, t.CertFile, na.UTC().Format(time.RFC3339)))
		case left < clientCertWarning:
			fmt.Fprintf(w, "%s OK; WARNING: it expires in %d days (%s)\n", what, int(left.Hours()/24), na.UTC().Format(time.RFC3339))
		default:
			fmt.Fprintf(w, "%s OK, valid until %s (%d days)\n", what, na.UTC().Format(time.DateOnly), int(left.Hours()/24))
		}
	}
	report("ims: client certificate", "ims.client_cert_file", cfg.IMS.EgressTLS())
	for _, rc := range cfg.Routes {
		report("route "+rc.Name+": upstream client certificate", "client_cert_file", rc.EgressTLS())
	}
	return problems
}

// prefixProblems puts prefix in front of each problem of a joined error, so
// that each line says what it is about.
func prefixProblems(prefix string, err error) error {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s%w", prefix, e)
	}
	return errors.Join(out...)
}

// egressProxy reads a proxy_url setting: "" means the environment's
// HTTPS_PROXY/NO_PROXY (nil, false), "direct" means no proxy at all.
func egressProxy(s string) (u *url.URL, direct bool, err error) {
	switch s {
	case "":
		return nil, false, nil
	case "direct":
		return nil, true, nil
	}
	// config.ParseURL, unlike url.Parse, never repeats a password in its
	// errors, and proxy URLs may carry one.
	p, err := config.ParseURL(s)
	if err != nil {
		return nil, false, err
	}
	return &p.URL, false, nil
}

// newProvider builds the credential of one route: nil, with no error, for a
// route that forwards without Authorization.
func newProvider(rc config.Route, d imsDeps, getenv func(string) string, log zerolog.Logger, onFetch func(time.Duration, error)) (*ims.Provider, error) {
	o := ims.ProviderOptions{
		Path:                rc.Credentials,
		OAuthCredentialName: rc.OAuthCredential,
		Exchange:            ims.ExchangeOptions{BaseURL: d.base, Client: d.client, JWTLifetime: d.jwtLifetime},
		Cache:               ims.CacheOptions{Name: rc.Name, Logger: log, OnFetch: onFetch},
		Logger:              log.With().Str("route", rc.Name).Logger(),
	}
	switch rc.CredentialsKind {
	case "none":
		return nil, nil
	case "sdk_defaults":
		o.Basic = &ims.BasicCredentials{Username: "admin", Password: "admin"}
	case "":
	default:
		o.Kind = ims.Kind(rc.CredentialsKind)
	}
	if rc.Token != "" {
		o.Token = ims.Secret(rc.Token)
		o.Kind = ims.KindDevToken
	}
	if b := rc.Basic; !b.IsZero() {
		password, err := readPassword(b, getenv)
		if err != nil {
			return nil, err
		}
		o.Basic = &ims.BasicCredentials{Username: b.Username, Password: password}
	}
	if o.Path == "" && o.Token == "" && o.Basic == nil {
		return nil, nil
	}
	return ims.NewProvider(o)
}

func readPassword(b config.Basic, getenv func(string) string) (ims.Secret, error) {
	if b.PasswordEnv != "" {
		v := getenv(b.PasswordEnv)
		if v == "" {
			return "", fmt.Errorf("basic.password_env: environment variable %s is empty or unset", b.PasswordEnv)
		}
		return ims.Secret(v), nil
	}
	data, err := os.ReadFile(b.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("basic.password_file: %w", err)
	}
	p := strings.TrimRight(string(data), "\r\n")
	if p == "" {
		return "", fmt.Errorf("basic.password_file %s: empty", b.PasswordFile)
	}
	return ims.Secret(p), nil
}

// setAPIKey decides a route's X-Api-Key: the OAuth client id of its
// current credential (asked per request, since a reload can change it)
// unless the route says otherwise.
func setAPIKey(r *proxy.Route, rc config.Route, p *ims.Provider) {
	switch rc.APIKey {
	case "off":
	case "":
		if p != nil {
			r.APIKeyFunc = p.APIKey
		}
	default:
		r.APIKey = rc.APIKey
	}
}

// credentialFlags parses the flags that name one credential, for the token
// and check commands.
type credentialFlags struct {
	fs         *flag.FlagSet
	config     *string
	creds      *string
	kind       *string
	oauthName  *string
	imsURL     *string
	online     *bool
	jwtLife    *time.Duration
	imsTimeout *time.Duration
}

func newCredentialFlags(name, usage string, stderr io.Writer, withConfig bool) *credentialFlags {
	f := &credentialFlags{fs: flag.NewFlagSet("aemproxy "+name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	if withConfig {
		f.config = f.fs.String("config", "", "check every route of this config file")
		f.online = f.fs.Bool("online", false, "also perform one real token exchange per credential")
	}
	f.creds = f.fs.String("credentials", "", "credentials file (AEMPROXY_TOKEN in the environment works too)")
	f.kind = f.fs.String("credentials-kind", "", "state the kind instead of detecting it")
	f.oauthName = f.fs.String("oauth-credential", "", "OAuth credential name in a workspace JSON holding several")
	f.imsURL = f.fs.String("ims-url", "", "send IMS requests to this base URL instead of https://{imsEndpoint}")
	f.jwtLife = f.fs.Duration("jwt-lifetime", 5*time.Minute, "exp of the signed JWT")
	f.imsTimeout = f.fs.Duration("ims-timeout", 30*time.Second, "timeout of one IMS request")
	f.fs.Usage = func() {
		fmt.Fprintf(f.fs.Output(), "%s\n\nFlags:\n", usage)
		f.fs.PrintDefaults()
	}
	return f
}

// parse returns the routes to work on.
func (f *credentialFlags) parse(args []string, getenv func(string) string) (config.Config, error) {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, err
		}
		return config.Config{}, usageError{err}
	}
	if f.fs.NArg() > 0 {
		return config.Config{}, usageError{fmt.Errorf("unexpected argument %q", f.fs.Arg(0))}
	}
	cfg := config.Default()
	if f.config != nil && *f.config != "" {
		if *f.creds != "" {
			return cfg, usageError{errors.New("give --config or --credentials, not both")}
		}
		c, err := config.Load(*f.config)
		if err != nil {
			return cfg, err
		}
		cfg = c
	} else {
		r := config.RouteDefaults(config.Route{Name: "default", Credentials: *f.creds, CredentialsKind: *f.kind, OAuthCredential: *f.oauthName})
		r.Upstream, _ = config.ParseURL("https://aem.invalid") // the token and check commands reach no AEM
		if r.Credentials == "" {
			r.Token = strings.TrimSpace(getenv("AEMPROXY_TOKEN"))
		}
		if r.Credentials == "" && r.Token == "" {
			return cfg, usageError{errors.New("no credentials: give --credentials FILE (or --config FILE for check)")}
		}
		cfg.Routes = []config.Route{r}
	}
	if *f.imsURL != "" {
		u, err := config.ParseURL(*f.imsURL)
		if err != nil {
			return cfg, usageError{fmt.Errorf("--ims-url: %w", err)}
		}
		cfg.IMS.URL = u
	}
	cfg.IMS.JWTLifetime = *f.jwtLife
	cfg.IMS.Timeout = *f.imsTimeout
	return cfg, nil
}

// tokenOutput is what `aemproxy token` prints, like Adobe's own CLI.
type tokenOutput struct {
	TokenType   string `json:"token_type"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"` // seconds from now
	ExpiresAt   string `json:"expires_at"`
}

// runToken exchanges the credentials once and prints the access token.
func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newCredentialFlags("token", "Usage: aemproxy token --credentials FILE [--ims-url URL]\n\nExchanges the credentials once and prints the IMS access token as JSON.", stderr, false)
	cfg, err := f.parse(args, getenv)
	if err != nil {
		return err
	}
	log := zerolog.New(stderr).Level(zerolog.WarnLevel)
	d, err := newIMSDeps(cfg, log)
	if err != nil {
		return err
	}
	p, err := newProvider(cfg.Routes[0], d, getenv, log, nil)
	if err != nil {
		return err
	}
	if p == nil {
		return usageError{errors.New("this credential kind carries no token")}
	}
	tok, err := p.Once(ctx)
	if err != nil {
		return err
	}
	typ := "bearer"
	if tok.Scheme != "" {
		typ = strings.ToLower(tok.Scheme)
	}
	out := tokenOutput{TokenType: typ, AccessToken: tok.AccessToken}
	if !tok.ExpiresAt.IsZero() {
		out.ExpiresIn = int64(time.Until(tok.ExpiresAt).Seconds())
		out.ExpiresAt = tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// runCheck validates configuration and credentials offline, and with
// --online exchanges each credential once. It lists every problem and
// fails if there is any.
func runCheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newCredentialFlags("check", "Usage: aemproxy check (--config FILE | --credentials FILE) [--online]\n\nValidates the configuration and credentials: keys parse, the key matches its certificate,\ncertificate dates, required fields, API keys files, the TLS certificate and its dates;\nwith --online also one real exchange per credential.", stderr, true)
	cfg, err := f.parse(args, getenv)
	if err != nil {
		return err
	}
	var problems []string
	if *f.config != "" {
		if err := cfg.Validate(); err != nil {
			for _, l := range strings.Split(err.Error(), "\n") {
				problems = append(problems, "config: "+l)
			}
		}
		problems = append(problems, checkInbound(cfg, time.Now(), stdout)...)
		problems = append(problems, checkEgress(cfg, time.Now(), stdout)...)
	}
	log := zerolog.New(stderr).Level(zerolog.WarnLevel)
	d, err := newIMSDeps(cfg, log)
	// With --config, validation has named whatever keeps the IMS client
	// from being built (ims.proxy_url, ims.ca_file, the client certificate).
	if err != nil && *f.config == "" {
		problems = append(problems, err.Error())
	}
	now := time.Now()
	for _, rc := range cfg.Routes {
		p, err := newProvider(rc, d, getenv, log, nil)
		if err != nil {
			for _, l := range strings.Split(err.Error(), "\n") {
				problems = append(problems, fmt.Sprintf("route %s: %s", rc.Name, l))
			}
			continue
		}
		if p == nil {
			fmt.Fprintf(stdout, "route %s: no credentials; requests are forwarded without Authorization\n", rc.Name)
			continue
		}
		line := fmt.Sprintf("route %s: %s credentials OK", rc.Name, p.Kind())
		if na := p.State().CertificateNotAfter; !na.IsZero() {
			days := int(na.Sub(now).Hours() / 24)
			switch {
			case !now.Before(na):
				problems = append(problems, fmt.Sprintf("route %s: certificate (integration.publicKey) expired at %s; create a new one in the AEM Developer Console", rc.Name, na.UTC().Format(time.RFC3339)))
			case days < 30:
				line += fmt.Sprintf("; WARNING: certificate expires in %d days (%s)", days, na.UTC().Format(time.RFC3339))
			default:
				line += fmt.Sprintf("; certificate valid until %s (%d days)", na.UTC().Format(time.DateOnly), days)
			}
		}
		if *f.online {
			tok, err := p.Once(ctx)
			if err != nil {
				problems = append(problems, fmt.Sprintf("route %s: exchange: %v", rc.Name, err))
				continue
			}
			if !tok.ExpiresAt.IsZero() {
				line += fmt.Sprintf("; exchange OK, token valid until %s", tok.ExpiresAt.UTC().Format(time.RFC3339))
			} else {
				line += "; exchange OK"
			}
		}
		fmt.Fprintln(stdout, line)
	}
	if len(problems) > 0 {
		return fmt.Errorf("check found %d problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
	}
	fmt.Fprintln(stdout, "OK")
	return nil
}
