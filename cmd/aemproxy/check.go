package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/guard"
)

// checkInbound is the part of check that reads the files deciding who may
// use the proxy: each route's API keys file, parsed as the guard parses it,
// and the proxy listeners' TLS certificate. It writes what is fine to w and
// returns the problems. A file that cannot be read, a certificate that does
// not load or match its key, and a client CA file without certificates are
// left to config validation, which names them already. Nothing read from
// these files (a key, a line, a private key) is ever repeated.
func checkInbound(cfg config.Config, now time.Time, w io.Writer) []string {
	var problems []string
	for _, rc := range cfg.Routes {
		path := rc.Access.APIKeysFile
		if path == "" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue // config validation names an unreadable file
		}
		n, err := guard.ParseKeys(data)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("route %s: access.api_keys_file %s: %v", rc.Name, path, err))
		case n == 0:
			problems = append(problems, fmt.Sprintf("route %s: access.api_keys_file %s holds no key, so every request would be refused; add one key per line", rc.Name, path))
		default:
			fmt.Fprintf(w, "route %s: API keys file OK (%d keys)\n", rc.Name, n)
		}
	}
	if t := cfg.TLS; t.Enabled() {
		if line, problem := checkTLSCertificate(t, now); problem != "" {
			problems = append(problems, problem)
		} else if line != "" {
			fmt.Fprintln(w, line)
		}
	}
	return problems
}

// checkTLSCertificate reports the dates of the listeners' certificate: a
// problem when it is not valid now, a warning within 30 days of its end.
// It says nothing when the pair does not load (config validation has said
// why).
func checkTLSCertificate(t config.TLS, now time.Time) (line, problem string) {
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil || pair.Leaf == nil {
		return "", ""
	}
	leaf := pair.Leaf
	switch {
	case now.Before(leaf.NotBefore):
		return "", fmt.Sprintf("tls.cert_file %s: the certificate is not valid before %s; check it and this machine's clock", t.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(leaf.NotAfter):
		return "", fmt.Sprintf("tls.cert_file %s: the certificate expired at %s; install a new certificate and key (they are reloaded without a restart)", t.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	name := leaf.Subject.CommonName
	if name == "" && len(leaf.DNSNames) > 0 {
		name = leaf.DNSNames[0]
	}
	line = fmt.Sprintf("tls: certificate %q OK", name)
	switch days := int(leaf.NotAfter.Sub(now).Hours() / 24); {
	case days < 1:
		line += fmt.Sprintf("; WARNING: it expires in less than a day (%s)", leaf.NotAfter.UTC().Format(time.RFC3339))
	case days < 30:
		line += fmt.Sprintf("; WARNING: it expires in %d days (%s)", days, leaf.NotAfter.UTC().Format(time.RFC3339))
	default:
		line += fmt.Sprintf(", valid until %s (%d days)", leaf.NotAfter.UTC().Format(time.DateOnly), days)
	}
	line += "; client certificates: " + t.EffectiveClientAuth()
	return line, ""
}
