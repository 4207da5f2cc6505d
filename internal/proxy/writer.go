package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// responseWriter records the status and body bytes of a response on its
// way to the client. It flushes straight through and unwraps for
// http.ResponseController, so streaming and hijacking work as without it.
type responseWriter struct {
	w      http.ResponseWriter
	status int // 0 until the final status is known
	bytes  int64
}

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

func (rw *responseWriter) WriteHeader(code int) {
	// 1xx responses other than 101 precede the final one. ReverseProxy
	// sends them from the transport's goroutine, so they must not touch
	// rw's fields.
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		rw.w.WriteHeader(code)
		return
	}
	if rw.status == 0 {
		rw.status = code
	}
	rw.w.WriteHeader(code)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.w.Write(p)
	rw.bytes += int64(n)
	return n, err
}

// FlushError sends buffered data to the client now.
func (rw *responseWriter) FlushError() error {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	return http.NewResponseController(rw.w).Flush()
}

// Flush implements http.Flusher for callers that do not use
// http.ResponseController.
func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// Unwrap returns the ResponseWriter rw wraps.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

const (
	// copyBufferSize is the buffer that copies a response body of unknown
	// or modest length to the client.
	copyBufferSize = 32 << 10
	// largeCopyBufferSize copies bodies of at least largeBodySize (asset
	// downloads): eight times fewer reads and writes cut the proxy's CPU
	// per GiB by about a fifth (bench/README.md). Small responses keep the
	// small buffer so that many concurrent ones do not pin 256 KiB each.
	largeCopyBufferSize = 256 << 10
	largeBodySize       = 1 << 20
)

// bufferPool lends the ReverseProxy its copy buffers in two sizes. It
// stores array pointers so that Put does not allocate.
type bufferPool struct{ small, large sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{
		small: sync.Pool{New: func() any { return new([copyBufferSize]byte) }},
		large: sync.Pool{New: func() any { return new([largeCopyBufferSize]byte) }},
	}
}

// get returns a buffer for copying a body of the given length (-1 if
// unknown).
func (bp *bufferPool) get(length int64) []byte {
	if length >= largeBodySize {
		return bp.large.Get().(*[largeCopyBufferSize]byte)[:]
	}
	return bp.small.Get().(*[copyBufferSize]byte)[:]
}

func (bp *bufferPool) put(b []byte) {
	switch cap(b) {
	case largeCopyBufferSize:
		bp.large.Put((*[largeCopyBufferSize]byte)(b[:largeCopyBufferSize]))
	case copyBufferSize:
		bp.small.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}

// maxRequestIDLen bounds an inbound X-Request-Id that is honoured.
const maxRequestIDLen = 128

// requestIDs makes request ids unique across restarts (random prefix) and
// within a process (counter).
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	var b [64]byte
	out := append(b[:0], g.prefix...)
	out = strconv.AppendUint(out, g.n.Add(1), 36)
	return string(out)
}

// requestID returns the client's X-Request-Id when it is sane, else a new
// one. Sane: one value of at most maxRequestIDLen letters, digits and
// -_.:+/=@ so that it is safe in logs and headers.
func (g *requestIDs) requestID(h http.Header) string {
	if v := h["X-Request-Id"]; len(v) == 1 && saneRequestID(v[0]) {
		return v[0]
	}
	return g.next()
}

func saneRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:+/=@", c) >= 0) {
			return false
		}
	}
	return true
}

// debugWriter turns ReverseProxy's rare log lines (a body copy that failed
// mid-stream) into debug events instead of the standard logger's output.
type debugWriter struct{ log zerolog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.log.Debug().Msg(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
