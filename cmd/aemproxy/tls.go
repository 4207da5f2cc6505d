package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/reload"
)

// tlsCheckInterval is how often, at most, a handshake looks at whether the
// TLS files changed.
const tlsCheckInterval = 2 * time.Second

// tlsFiles holds the proxy listeners' certificate and client CA pool, read
// from the files of config.TLS and re-read when they change or on Reload.
// A reading that fails keeps the previous one.
type tlsFiles struct {
	cfg config.TLS
	log zerolog.Logger

	cur atomic.Pointer[tlsState]
	// check lets one handshake at a time look at the files, at most once
	// per tlsCheckInterval; the others go on with the current state.
	check reload.Throttle
}

// tlsState is one reading of the files: the tls.Config every handshake
// uses until the next reading, and what the files looked like.
type tlsState struct {
	conf  *tls.Config
	stamp reload.Stamp
}

var clientAuthModes = map[string]tls.ClientAuthType{
	"none":    tls.NoClientCert,
	"request": tls.VerifyClientCertIfGiven,
	"require": tls.RequireAndVerifyClientCert,
}

// newTLSFiles reads the files once; its error says what is wrong with them.
func newTLSFiles(c config.TLS, now func() time.Time, log zerolog.Logger) (*tlsFiles, error) {
	f := &tlsFiles{cfg: c, log: log, check: reload.Throttle{Interval: tlsCheckInterval, Now: now}}
	if err := f.load(); err != nil {
		return nil, err
	}
	f.check.Reset()
	return f, nil
}

// ServerConfig is the tls.Config for a proxy listener. Each handshake gets
// the current reading of the files through GetConfigForClient.
func (f *tlsFiles) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			f.maybeReload()
			return f.cur.Load().conf, nil
		},
	}
}

// Reload reads the files now. On error the current certificate stays.
func (f *tlsFiles) Reload() error {
	f.check.Begin()
	defer f.check.End()
	return f.load()
}

// maybeReload re-reads the files when the size or modification time of one
// changed, looking at most once per tlsCheckInterval.
func (f *tlsFiles) maybeReload() {
	if !f.check.TryBegin() {
		return
	}
	defer f.check.End()
	stamp, err := reload.Stat(f.paths()...)
	if err != nil {
		f.log.Warn().Err(err).Msg("TLS files unreadable; keeping the current certificate")
		return
	}
	if stamp.Equal(f.cur.Load().stamp) {
		return
	}
	if err := f.load(); err != nil {
		f.log.Warn().Err(err).Msg("TLS files refused; keeping the current certificate")
	}
}

func (f *tlsFiles) paths() []string {
	p := []string{f.cfg.CertFile, f.cfg.KeyFile}
	if f.cfg.ClientCAFile != "" {
		p = append(p, f.cfg.ClientCAFile)
	}
	return p
}

// load reads the files. The stamps are taken first, so that a file changed
// while it is read is read again at the next check.
func (f *tlsFiles) load() error {
	stamp, err := reload.Stat(f.paths()...)
	if err != nil {
		return fmt.Errorf("TLS files: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(f.cfg.CertFile, f.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", f.cfg.CertFile, f.cfg.KeyFile, err)
	}
	mode, ok := clientAuthModes[f.cfg.EffectiveClientAuth()]
	if !ok {
		return fmt.Errorf("tls.client_auth: %q is not one of none, request, require", f.cfg.ClientAuth)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{pair},
		ClientAuth:   mode,
	}
	if f.cfg.ClientCAFile != "" {
		data, err := os.ReadFile(f.cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("TLS client CAs: %w", err)
		}
		conf.ClientCAs = x509.NewCertPool()
		if !conf.ClientCAs.AppendCertsFromPEM(data) {
			return errors.New("TLS client CAs: " + f.cfg.ClientCAFile + " holds no PEM certificate")
		}
	}
	old := f.cur.Swap(&tlsState{conf: conf, stamp: stamp})
	if old != nil {
		f.log.Info().Str("cert_file", f.cfg.CertFile).Time("not_after", pair.Leaf.NotAfter).Msg("TLS certificate reloaded")
	}
	return nil
}
