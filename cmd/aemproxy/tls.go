package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/config"
)

// tlsCheckInterval is how often, at most, a handshake looks at whether the
// TLS files changed.
const tlsCheckInterval = 2 * time.Second

// tlsFiles holds the proxy listeners' certificate and client CA pool, read
// from the files of config.TLS and re-read when they change or on Reload.
// A reading that fails keeps the previous one.
type tlsFiles struct {
	cfg config.TLS
	now func() time.Time
	log zerolog.Logger

	cur       atomic.Pointer[tlsState]
	nextCheck atomic.Int64 // unix nanoseconds
	// mu lets one handshake at a time look at the files; the others go on
	// with the current state rather than wait.
	mu sync.Mutex
}

// tlsState is one reading of the files: the tls.Config every handshake
// uses until the next reading, and what the files looked like.
type tlsState struct {
	conf   *tls.Config
	stamps []fileStamp
}

type fileStamp struct {
	size int64
	mod  time.Time
}

var clientAuthModes = map[string]tls.ClientAuthType{
	"none":    tls.NoClientCert,
	"request": tls.VerifyClientCertIfGiven,
	"require": tls.RequireAndVerifyClientCert,
}

// newTLSFiles reads the files once; its error says what is wrong with them.
func newTLSFiles(c config.TLS, now func() time.Time, log zerolog.Logger) (*tlsFiles, error) {
	f := &tlsFiles{cfg: c, now: now, log: log}
	if err := f.load(); err != nil {
		return nil, err
	}
	f.nextCheck.Store(now().Add(tlsCheckInterval).UnixNano())
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
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

// maybeReload re-reads the files when the size or modification time of one
// changed, looking at most once per tlsCheckInterval.
func (f *tlsFiles) maybeReload() {
	now := f.now()
	if now.UnixNano() < f.nextCheck.Load() || !f.mu.TryLock() {
		return
	}
	defer f.mu.Unlock()
	f.nextCheck.Store(now.Add(tlsCheckInterval).UnixNano())
	stamps, err := f.stat()
	if err != nil {
		f.log.Warn().Err(err).Msg("TLS files unreadable; keeping the current certificate")
		return
	}
	if equalStamps(stamps, f.cur.Load().stamps) {
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

func (f *tlsFiles) stat() ([]fileStamp, error) {
	var stamps []fileStamp
	for _, p := range f.paths() {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		stamps = append(stamps, fileStamp{st.Size(), st.ModTime()})
	}
	return stamps, nil
}

func equalStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].mod.Equal(b[i].mod) {
			return false
		}
	}
	return true
}

// load reads the files. The stamps are taken first, so that a file changed
// while it is read is read again at the next check.
func (f *tlsFiles) load() error {
	stamps, err := f.stat()
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
	old := f.cur.Swap(&tlsState{conf: conf, stamps: stamps})
	if old != nil {
		f.log.Info().Str("cert_file", f.cfg.CertFile).Time("not_after", pair.Leaf.NotAfter).Msg("TLS certificate reloaded")
	}
	return nil
}
