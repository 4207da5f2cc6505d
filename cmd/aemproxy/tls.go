package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/reload"
)

// tlsCheckInterval is how often, at most, a handshake looks at whether the
// TLS files changed.
const tlsCheckInterval = 2 * time.Second

// tlsFiles holds the proxy listeners' certificate and client CA pool, read
// from the files of config.TLS and re-read when they change (looked at, by
// one handshake at a time, at most once per tlsCheckInterval) or on Reload.
// A reading that fails keeps the previous one.
type tlsFiles struct {
	conf *reload.Value[*tls.Config]
}

var clientAuthModes = map[string]tls.ClientAuthType{
	"none":    tls.NoClientCert,
	"request": tls.VerifyClientCertIfGiven,
	"require": tls.RequireAndVerifyClientCert,
}

// newTLSFiles reads the files once; its error says what is wrong with them.
func newTLSFiles(c config.TLS, now func() time.Time, log zerolog.Logger) (*tlsFiles, error) {
	paths := []string{c.CertFile, c.KeyFile}
	if c.ClientCAFile != "" {
		paths = append(paths, c.ClientCAFile)
	}
	v, err := reload.NewValue(paths, tlsCheckInterval, now, func() (*tls.Config, error) { return readTLSFiles(c) },
		reload.Events[*tls.Config]{
			Loaded: func(_, cur *tls.Config) {
				log.Info().Str("cert_file", c.CertFile).Time("not_after", cur.Certificates[0].Leaf.NotAfter).Msg("TLS certificate reloaded")
			},
			Refused: func(err error) {
				log.Warn().Err(err).Msg("TLS files refused; keeping the current certificate")
			},
			Unreadable: func(err error) {
				log.Warn().Err(err).Msg("TLS files unreadable; keeping the current certificate")
			},
		})
	if err != nil {
		return nil, err
	}
	return &tlsFiles{conf: v}, nil
}

// ServerConfig is the tls.Config for a proxy listener. Each handshake gets
// the current reading of the files through GetConfigForClient.
func (f *tlsFiles) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.conf.Get(), nil
		},
	}
}

// Reload reads the files now. On error the current certificate stays.
func (f *tlsFiles) Reload() error { return f.conf.Reload() }

// readTLSFiles reads the certificate, its key and the client CAs of c.
func readTLSFiles(c config.TLS) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
	}
	mode, ok := clientAuthModes[c.EffectiveClientAuth()]
	if !ok {
		return nil, fmt.Errorf("tls.client_auth: %q is not one of none, request, require", c.ClientAuth)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{pair},
		ClientAuth:   mode,
	}
	if c.ClientCAFile != "" {
		data, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client CAs: %w", err)
		}
		conf.ClientCAs = x509.NewCertPool()
		if !conf.ClientCAs.AppendCertsFromPEM(data) {
			return nil, errors.New("TLS client CAs: " + c.ClientCAFile + " holds no PEM certificate")
		}
	}
	return conf, nil
}
