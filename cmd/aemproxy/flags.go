package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/aemproxy/aemproxy/internal/config"
)

// setting is a command-line flag with its AEMPROXY_* environment variable.
// Flags win over the environment, the environment over the config file.
type setting struct {
	name  string
	usage string
	apply func(c *config.Config, v string) error
}

func (s setting) env() string {
	return "AEMPROXY_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

var settings = []setting{
	{"listen", "proxy listen address (default 127.0.0.1:8080)", func(c *config.Config, v string) error {
		c.Listen = v
		return nil
	}},
	{"admin-listen", "admin listen address for /healthz, /readyz, /metrics (default 127.0.0.1:9090)", func(c *config.Config, v string) error {
		c.AdminListen = v
		return nil
	}},
	{"upstream", "AEM origin to forward to, e.g. https://author-p1-e2.adobeaemcloud.com (single-route form)", func(c *config.Config, v string) error {
		u, err := config.ParseURL(v)
		if err != nil {
			return err
		}
		return onlyRoute(c, func(r *config.Route) { r.Upstream = u })
	}},
	{"credentials", "credentials file, kind detected from its content: AEM service credentials JSON, OAuth server-to-server JSON, local development token, or {username,password} (single-route form)", func(c *config.Config, v string) error {
		// A credentials file (flag or AEMPROXY_CREDENTIALS) wins over AEMPROXY_TOKEN.
		return onlyRoute(c, func(r *config.Route) { r.Credentials, r.Token = v, "" })
	}},
	{"credentials-kind", "state the credentials kind instead of detecting it: service_credentials, oauth_server_to_server, dev_token, basic, sdk_defaults, none (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.CredentialsKind = v })
	}},
	{"oauth-credential", "name of the OAuth server-to-server credential to use from a workspace JSON holding several (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.OAuthCredential = v })
	}},
	{"basic-user", "HTTP Basic user for a local AEM SDK; the password comes from --basic-password-file or AEMPROXY_BASIC_PASSWORD (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.Basic.Username = v })
	}},
	{"basic-password-file", "file holding the HTTP Basic password (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.Basic.PasswordFile = v; r.Basic.PasswordEnv = "" })
	}},
	{"upstream-ca-file", "PEM bundle trusted for the upstream in addition to system roots (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.CAFile = v })
	}},
	{"upstream-client-cert-file", "PEM client certificate presented to the upstream (mutual TLS), with --upstream-client-key-file (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.ClientCertFile = v })
	}},
	{"upstream-client-key-file", "unencrypted PEM private key of the upstream client certificate (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.ClientKeyFile = v })
	}},
	{"upstream-server-name", "name sent as SNI and verified in the upstream's certificate instead of the upstream URL's host (single-route form)", func(c *config.Config, v string) error {
		return onlyRoute(c, func(r *config.Route) { r.ServerName = v })
	}},
	{"ims-url", "send IMS requests to this base URL instead of https://{imsEndpoint} (tests, egress gateways)", func(c *config.Config, v string) error {
		u, err := config.ParseURL(v)
		if err != nil {
			return err
		}
		c.IMS.URL = u
		return nil
	}},
	{"ims-ca-file", "PEM bundle trusted for IMS in addition to system roots", func(c *config.Config, v string) error {
		c.IMS.CAFile = v
		return nil
	}},
	{"ims-client-cert-file", "PEM client certificate presented to IMS or its egress gateway (mutual TLS), with --ims-client-key-file", func(c *config.Config, v string) error {
		c.IMS.ClientCertFile = v
		return nil
	}},
	{"ims-client-key-file", "unencrypted PEM private key of the IMS client certificate", func(c *config.Config, v string) error {
		c.IMS.ClientKeyFile = v
		return nil
	}},
	{"tls-cert-file", "PEM server certificate chain, leaf first: the proxy listeners serve HTTPS", func(c *config.Config, v string) error {
		c.TLS.CertFile = v
		return nil
	}},
	{"tls-key-file", "PEM private key of the TLS certificate", func(c *config.Config, v string) error {
		c.TLS.KeyFile = v
		return nil
	}},
	{"tls-client-ca-file", "PEM bundle of the CAs whose client certificates are accepted (mutual TLS)", func(c *config.Config, v string) error {
		c.TLS.ClientCAFile = v
		return nil
	}},
	{"tls-client-auth", "none, request or require (default require with a client CA file, else none)", func(c *config.Config, v string) error {
		c.TLS.ClientAuth = v
		return nil
	}},
	{"log-level", "debug, info, warn or error (default info)", func(c *config.Config, v string) error {
		c.Log.Level = v
		return nil
	}},
	{"log-format", "json or console (default json)", func(c *config.Config, v string) error {
		c.Log.Format = v
		return nil
	}},
}

// onlyRoute applies a single-route flag: it creates the route when the
// config has none and refuses to guess when it has several.
func onlyRoute(c *config.Config, set func(*config.Route)) error {
	switch len(c.Routes) {
	case 0:
		c.Routes = append(c.Routes, config.RouteDefaults(config.Route{Name: "default"}))
	case 1:
	default:
		return fmt.Errorf("applies to a single route, but the config file has %d routes; set it in the file instead", len(c.Routes))
	}
	set(&c.Routes[0])
	return nil
}

// loadConfig builds the configuration from the file named by --config or
// AEMPROXY_CONFIG, then the environment, then flags, and validates it.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config.Config, error) {
	fs := flag.NewFlagSet("aemproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file (env AEMPROXY_CONFIG); see config.example.yaml")
	values := make([]*string, len(settings))
	for i, s := range settings {
		values[i] = fs.String(s.name, "", s.usage+" (env "+s.env()+")")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  aemproxy [flags]\n  aemproxy demo [flags]\n  aemproxy token --credentials FILE [--ims-url URL]\n  aemproxy check (--config FILE | --credentials FILE) [--online]\n  aemproxy version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, err
		}
		return config.Config{}, usageError{err}
	}
	if fs.NArg() > 0 {
		return config.Config{}, usageError{fmt.Errorf("unexpected argument %q; commands are demo, token, check and version, and flags start with -", fs.Arg(0))}
	}

	cfg := config.Default()
	path := *configPath
	if path == "" {
		path = getenv("AEMPROXY_CONFIG")
	}
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return config.Config{}, err
		}
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var problems []error
	// Secrets come only from the environment, never from flags (which any
	// local user can read in the process list).
	if tok := strings.TrimSpace(getenv("AEMPROXY_TOKEN")); tok != "" {
		if err := onlyRoute(&cfg, func(r *config.Route) { r.Token = tok }); err != nil {
			problems = append(problems, fmt.Errorf("AEMPROXY_TOKEN: %w", err))
		}
	}
	if getenv("AEMPROXY_BASIC_PASSWORD") != "" {
		if err := onlyRoute(&cfg, func(r *config.Route) {
			if r.Basic.PasswordFile == "" {
				r.Basic.PasswordEnv = "AEMPROXY_BASIC_PASSWORD"
			}
		}); err != nil {
			problems = append(problems, fmt.Errorf("AEMPROXY_BASIC_PASSWORD: %w", err))
		}
	}
	for i, s := range settings {
		if v := getenv(s.env()); v != "" && !set[s.name] {
			if err := s.apply(&cfg, v); err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", s.env(), err))
			}
		}
		if set[s.name] {
			if err := s.apply(&cfg, *values[i]); err != nil {
				problems = append(problems, fmt.Errorf("--%s: %w", s.name, err))
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return config.Config{}, usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, fmt.Errorf("invalid configuration:\n%w", indent(err))
	}
	return cfg, nil
}

// indent puts each line of a joined error on its own bulleted line.
func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  - " + l
	}
	return errors.New(strings.Join(lines, "\n"))
}
