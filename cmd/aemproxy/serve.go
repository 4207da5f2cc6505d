package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/egress"
	"github.com/aemproxy/aemproxy/internal/guard"
	"github.com/aemproxy/aemproxy/internal/ims"
	"github.com/aemproxy/aemproxy/internal/logwriter"
	"github.com/aemproxy/aemproxy/internal/ops"
	"github.com/aemproxy/aemproxy/internal/proxy"
)

// newLogger returns the process's logger and a function that writes out
// what it still holds. JSON lines to a file or pipe (stderr, in production)
// are buffered for up to c.FlushInterval below warn level (package
// logwriter), so that the access log does not cost a system call per
// request; other writers, such as a test's buffer, get every line at once.
func newLogger(c config.Log, w io.Writer) (zerolog.Logger, func()) {
	flush := func() {}
	if _, ok := w.(*os.File); ok && c.Format != "console" && c.FlushInterval > 0 {
		bw := logwriter.New(w, logwriter.Options{Interval: c.FlushInterval})
		w, flush = bw, func() { _ = bw.Close() }
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), flush
}

// app is everything serve builds from a validated configuration.
type app struct {
	providers []*ims.Provider
	guards    []*guard.Guard
	egress    []*egress.Client         // outbound TLS settings, for SIGHUP
	listeners map[string][]proxy.Route // by listen address
	opsRoutes []ops.Route
}

// build loads every route's credentials and transport. It reports every
// problem at once and starts nothing.
func build(cfg config.Config, getenv func(string) string, log zerolog.Logger, reg prometheus.Registerer) (*app, error) {
	a := &app{listeners: map[string][]proxy.Route{}}
	var problems []error

	deps, err := newIMSDeps(cfg, log)
	if err != nil {
		problems = append(problems, err)
	}
	if deps.tls != nil {
		a.egress = append(a.egress, deps.tls)
		logClientCertExpiry(log.With().Str("egress", "ims").Logger(), cfg.IMS.ClientCertFile, deps.tls.NotAfter(), time.Now())
	}
	imsMetrics := ops.NewIMSMetrics(reg)

	transports := map[proxy.TransportOptions]*http.Transport{}
	// Routes with the same TLS settings share one tls.Config, and so can
	// share a transport.
	tlsConfigs := map[egress.TLS]*tls.Config{}
	for _, rc := range cfg.Routes {
		tc, ok := tlsConfigs[rc.EgressTLS()]
		if !ok {
			ec, err := upstreamTLS(rc, log)
			if err != nil {
				problems = append(problems, err)
				continue
			}
			tc = ec.Config()
			tlsConfigs[rc.EgressTLS()] = tc
			a.egress = append(a.egress, ec)
		}
		to := proxy.TransportOptions{TLSConfig: tc, ResponseHeaderTimeout: rc.ResponseHeaderTimeout}
		if to.ProxyURL, to.Direct, err = egressProxy(rc.ProxyURL); err != nil {
			problems = append(problems, fmt.Errorf("route %s: proxy_url: %w", rc.Name, err))
			continue
		}
		tr, ok := transports[to]
		if !ok {
			tr, err = proxy.NewTransport(to)
			if err != nil {
				problems = append(problems, fmt.Errorf("route %s: upstream transport: %w", rc.Name, err))
				continue
			}
			transports[to] = tr
		}

		r := proxy.Route{
			Name:            rc.Name,
			Upstream:        &rc.Upstream.URL,
			Hosts:           rc.Hosts,
			PathPrefix:      rc.PathPrefix,
			StripPrefix:     rc.StripPrefix,
			Transport:       tr,
			ReplayBodyLimit: rc.ReplayBodyLimit,
			ForwardedHost:   rc.ForwardedHost,
			PassCookies:     rc.PassCookies,
			CSRF:            rc.CSRF,
			APIKeyPaths:     rc.APIKeyPaths,
			MaxBodyBytes:    rc.Limits.MaxBodyBytes,
			MaxConcurrent:   rc.Limits.MaxConcurrent,
		}
		if acc, pol := rc.Access, rc.Policy; len(acc.AllowCIDRs) > 0 || acc.APIKeysFile != "" || acc.RequiredHeader != "" || !pol.IsZero() {
			g, err := guard.New(guard.Options{
				AllowCIDRs:     acc.AllowCIDRs,
				APIKeysFile:    acc.APIKeysFile,
				APIKeyHeader:   acc.APIKeyHeader,
				RequiredHeader: acc.RequiredHeader,
				ReadOnly:       pol.ReadOnly,
				AllowMethods:   pol.AllowMethods,
				DenyMethods:    pol.DenyMethods,
				AllowPaths:     pol.AllowPaths,
				DenyPaths:      pol.DenyPaths,
				Logger:         log.With().Str("route", rc.Name).Logger(),
			})
			if err != nil {
				problems = append(problems, fmt.Errorf("route %s: %w", rc.Name, err))
				continue
			}
			r.Guard = g
			a.guards = append(a.guards, g)
		}
		if rc.ExternalURL != nil {
			r.ExternalURL = &rc.ExternalURL.URL
		}
		opsRoute := ops.Route{Name: rc.Name}
		p, err := newProvider(rc, deps, getenv, log, imsMetrics.Observer(rc.Name))
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("route %s: %w", rc.Name, err))
			continue
		case p == nil && rc.CredentialsKind == "none":
			log.Info().Str("route", rc.Name).Str("upstream", rc.Upstream.Redacted()).
				Msg("credentials_kind none: requests are forwarded without an Authorization header")
		case p == nil:
			log.Warn().Str("route", rc.Name).Str("upstream", rc.Upstream.Redacted()).
				Msg("route has no credentials: requests are forwarded without an Authorization header (fine for a local AEM SDK with anonymous access; for AEM as a Cloud Service give --credentials; for the SDK's admin:admin give --credentials-kind sdk_defaults)")
		default:
			r.Tokens = p
			opsRoute.Tokens = p
			a.providers = append(a.providers, p)
			log.Info().Str("route", rc.Name).Str("credentials_kind", string(p.Kind())).Str("upstream", rc.Upstream.Redacted()).Msg("route ready to authenticate")
		}
		setAPIKey(&r, rc, p)
		listen := rc.Listen
		if listen == "" {
			listen = cfg.Listen
		}
		a.listeners[listen] = append(a.listeners[listen], r)
		a.opsRoutes = append(a.opsRoutes, opsRoute)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return a, nil
}

// serve runs the proxy until ctx is done, then drains and returns.
func serve(ctx context.Context, cfg config.Config, getenv func(string) string, log zerolog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := build(cfg, getenv, log, reg)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", indent(err))
	}
	if err := ops.RegisterTokenMetrics(reg, a.opsRoutes); err != nil {
		return err
	}
	metrics := proxy.NewMetrics(reg)
	admin := ops.New(ops.Options{Routes: a.opsRoutes, Gatherer: reg})

	var tlsf *tlsFiles
	if cfg.TLS.Enabled() {
		if tlsf, err = newTLSFiles(cfg.TLS, time.Now, log); err != nil {
			return fmt.Errorf("invalid configuration:\n%w", indent(err))
		}
	}

	errorLog := stdlog.New(log.With().Str("component", "http_server").Logger(), "", 0)
	type server struct {
		routes int
		srv    *http.Server
		ln     net.Listener
	}
	var servers []server
	closeAll := func() {
		for _, s := range servers {
			s.ln.Close()
		}
	}
	for addr, routes := range a.listeners {
		h, err := proxy.New(proxy.Options{Routes: routes, Logger: log, Metrics: metrics})
		if err != nil {
			closeAll()
			return fmt.Errorf("invalid configuration:\n%w", indent(err))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("proxy listener: %w", err)
		}
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
			IdleTimeout:       cfg.Server.IdleTimeout,
			MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
			ErrorLog:          errorLog,
			// No ReadTimeout or WriteTimeout: uploads and asset downloads
			// stream for as long as they take.
		}
		if tlsf != nil {
			// srv.TLSConfig offering h2 is what makes Serve set up HTTP/2.
			srv.TLSConfig = tlsf.ServerConfig()
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		// A required client certificate restricts who may connect as much
		// as allow_cidrs does.
		if cfg.TLS.EffectiveClientAuth() != "require" {
			warnExposure(log, ln.Addr(), routes)
		}
		servers = append(servers, server{routes: len(routes), ln: ln, srv: srv})
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		closeAll()
		return fmt.Errorf("admin listener: %w", err)
	}
	adminSrv := &http.Server{
		Handler:           admin.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          errorLog,
	}

	runCtx, stopRefresh := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, p := range a.providers {
		wg.Go(func() { p.Run(runCtx) })
	}
	// SIGHUP re-reads every credentials file now (they are also watched).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-hup:
				log.Info().Msg("SIGHUP: reloading credentials, API keys, TLS files and outbound client certificates")
				if tlsf != nil {
					if err := tlsf.Reload(); err != nil {
						log.Warn().Err(err).Msg("TLS files reload refused; keeping the current certificate")
					}
				}
				for _, p := range a.providers {
					if err := p.Reload(); err != nil {
						log.Warn().Err(err).Msg("credentials reload refused; keeping the current credential")
					}
				}
				for _, g := range a.guards {
					if err := g.Reload(); err != nil {
						log.Warn().Err(err).Msg("API keys reload refused; keeping the current keys")
					}
				}
				for _, e := range a.egress {
					if err := e.Reload(); err != nil {
						log.Warn().Err(err).Msg("outbound client certificate reload refused; keeping the current certificate")
					}
				}
			}
		}
	})
	serveErr := make(chan error, len(servers)+1)
	for _, s := range servers {
		log.Info().Str("addr", s.ln.Addr().String()).Int("routes", s.routes).
			Bool("tls", tlsf != nil).Str("client_auth", cfg.TLS.EffectiveClientAuth()).Msg("proxy listening")
		wg.Go(func() { serveErr <- s.srv.Serve(s.ln) })
	}
	log.Info().Str("addr", adminLn.Addr().String()).Msg("admin listening")
	wg.Go(func() { serveErr <- adminSrv.Serve(adminLn) })

	var failure error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down: readiness is now 503, draining in-flight requests")
	case err := <-serveErr:
		failure = fmt.Errorf("server stopped: %w", err)
		log.Error().Err(err).Msg("server stopped unexpectedly; shutting down")
	}
	admin.SetDraining()
	if cfg.ShutdownDelay > 0 && failure == nil {
		t := time.NewTimer(cfg.ShutdownDelay)
		<-t.C
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var swg sync.WaitGroup
	for _, s := range servers {
		swg.Go(func() {
			if err := s.srv.Shutdown(shutdownCtx); err != nil {
				log.Warn().Err(err).Msg("shutdown deadline passed; closing remaining connections")
				s.srv.Close()
			}
		})
	}
	swg.Wait()
	adminSrv.Shutdown(shutdownCtx)
	stopRefresh()
	wg.Wait()
	log.Info().Msg("stopped")
	return failure
}

// warnExposure says so when the proxy is reachable beyond this machine and
// a route on it restricts neither client addresses nor API keys: anyone who
// can connect acts as the technical account.
func warnExposure(log zerolog.Logger, addr net.Addr, routes []proxy.Route) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return
	}
	var open []string
	for _, r := range routes {
		if !r.Guard.Restricts() {
			open = append(open, r.Name)
		}
	}
	if len(open) == 0 {
		return
	}
	log.Warn().Str("addr", addr.String()).Strs("routes", open).
		Msg("the proxy listens beyond loopback and no allow_cidrs/api_keys are set: anyone who can reach this address acts with the route's AEM credentials; set access.allow_cidrs or access.api_keys_file, or restrict it with a firewall or network policy")
}
