package proxy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/rs/zerolog"
)

// countingConn records the size of each Write.
type countingConn struct {
	net.Conn
	sizes []int
	n     int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	c.n += len(p)
	return len(p), nil
}

func TestUploadConnCopiesLargeBodiesInLargeSteps(t *testing.T) {
	for _, c := range []struct {
		name    string
		body    func() io.Reader
		size    int
		maxStep int // the largest write wanted
	}{
		{"large, with a length", func() io.Reader { return io.LimitReader(bytes.NewReader(make([]byte, 3<<20)), 3<<20) }, 3 << 20, largeCopyBufferSize},
		{"small, with a length", func() io.Reader { return io.LimitReader(bytes.NewReader(make([]byte, 100<<10)), 100<<10) }, 100 << 10, 32 << 10},
		{"unknown length", func() io.Reader { return struct{ io.Reader }{bytes.NewReader(make([]byte, 3<<20))} }, 3 << 20, 32 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc := &countingConn{}
			n, err := uploadConn{cc}.ReadFrom(c.body())
			if err != nil || n != int64(c.size) || cc.n != c.size {
				t.Fatalf("copied %d (conn got %d), %v; want %d", n, cc.n, err, c.size)
			}
			if got := max(0, slicesMax(cc.sizes)); got != c.maxStep {
				t.Errorf("largest write %d bytes; want %d", got, c.maxStep)
			}
		})
	}
}

func slicesMax(s []int) int {
	m := -1
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// TestUploadsArriveWhole sends bodies of every kind through the proxy and
// its real transport and checks that AEM got each byte.
func TestUploadsArriveWhole(t *testing.T) {
	got := make(chan [32]byte, 1)
	aem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
		io.WriteString(w, strconv.FormatInt(n, 10))
	}))
	defer aem.Close()
	tr, err := NewTransport(TransportOptions{Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	h, err := New(Options{
		Routes: []Route{{Name: "author", Upstream: mustURL(t, aem.URL), Tokens: newTokens(), Transport: tr}},
		Logger: zerolog.New(io.Discard),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := httptest.NewServer(h)
	defer p.Close()

	for _, size := range []int{0, 1, 64<<10 + 1, largeBodySize - 1, largeBodySize, 5<<20 + 12345} {
		for _, chunked := range []bool{false, true} {
			body := make([]byte, size)
			for i := range body {
				body[i] = byte(i * 7 / 3)
			}
			var r io.Reader = bytes.NewReader(body)
			if chunked {
				r = struct{ io.Reader }{r} // hides the length
			}
			req, _ := http.NewRequest(http.MethodPut, p.URL+"/content/dam/up.bin", r)
			res := do(t, req)
			if res.StatusCode != 200 || string(res.body) != strconv.Itoa(size) {
				t.Fatalf("size %d chunked %v: %d %s", size, chunked, res.StatusCode, res.body)
			}
			if sum := <-got; sum != sha256.Sum256(body) {
				t.Errorf("size %d chunked %v: AEM got different bytes", size, chunked)
			}
		}
	}
}

// TestTransportDialsUploadConns checks the wiring: connections of
// NewTransport's transports copy large bodies as uploadConn does.
func TestTransportDialsUploadConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	tr, err := NewTransport(TransportOptions{Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tr.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(uploadConn); !ok {
		t.Errorf("NewTransport dials %T; want uploadConn", c)
	}
}
