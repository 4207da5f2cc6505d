package proxy

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamSize is how much the streaming tests push through the proxy, in
// each direction, without anyone holding it in memory.
const streamSize = 256 << 20

// patternBlock repeats through a pattern stream. Its length is prime, so a
// chunk that is lost, repeated or reordered changes the checksum.
var patternBlock = func() []byte {
	b := make([]byte, 65521)
	for i := range b {
		b[i] = byte(i*131 + i>>7)
	}
	return b
}()

// pattern generates n bytes of patternBlock, over and over.
type pattern struct{ off, n int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	written := 0
	for written < len(b) {
		written += copy(b[written:], patternBlock[(p.off+int64(written))%int64(len(patternBlock)):])
	}
	p.off += int64(written)
	return written, nil
}

func patternSum(n int64) (int64, uint32) {
	h := crc32.NewIEEE()
	m, _ := io.Copy(h, &pattern{n: n})
	return m, h.Sum32()
}

// countAndSum reads r to the end.
func countAndSum(r io.Reader) (int64, uint32, error) {
	h := crc32.NewIEEE()
	n, err := io.Copy(h, r)
	return n, h.Sum32(), err
}

func TestStreamsLargeUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	wantN, wantSum := patternSum(streamSize)
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		n, sum, err := countAndSum(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %d", n, sum)
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})
	for _, knownLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("known length %v", knownLength), func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, p.URL+"/content/dam/big.bin", &pattern{n: streamSize})
			if knownLength {
				req.ContentLength = streamSize
			}
			res := do(t, req)
			if want := fmt.Sprintf("%d %d", wantN, wantSum); res.StatusCode != 200 || string(res.body) != want {
				t.Errorf("AEM got %q (status %d); want %q", res.body, res.StatusCode, want)
			}
		})
	}
}

func TestStreamsLargeDownloads(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	wantN, wantSum := patternSum(streamSize)
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("length") == "known" {
			w.Header().Set("Content-Length", strconv.Itoa(streamSize))
		}
		io.Copy(w, &pattern{n: streamSize})
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})
	for _, length := range []string{"known", "unknown"} {
		t.Run(length, func(t *testing.T) {
			res, err := noRedirects.Get(p.URL + "/content/dam/big.bin?length=" + length)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			n, sum, err := countAndSum(res.Body)
			if err != nil || n != wantN || sum != wantSum {
				t.Errorf("client got %d bytes, crc %d, err %v; want %d bytes, crc %d", n, sum, err, wantN, wantSum)
			}
		})
	}
	p.waitServed(t, 2)
	for _, l := range p.logs.lines(t, "request") {
		if l["bytes"] != float64(streamSize) {
			t.Errorf("access log bytes = %v; want %d", l["bytes"], streamSize)
		}
	}
}

// TestUploadIsNotHeldBack checks that a body over the replay cap reaches
// AEM while the client is still sending it.
func TestUploadIsNotHeldBack(t *testing.T) {
	const first = 100 << 10 // more than the 64 KiB replay cap
	gotFirst := make(chan struct{})
	aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadFull(r.Body, make([]byte, first)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		close(gotFirst)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, first+n)
	})
	p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})

	pr, pw := io.Pipe()
	go func() {
		pw.Write(make([]byte, first))
		select {
		case <-gotFirst:
			pw.Write(make([]byte, 10))
			pw.Close()
		case <-time.After(10 * time.Second):
			pw.CloseWithError(fmt.Errorf("AEM did not get the first %d bytes while the upload was open", first))
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/content/dam/x", pr)
	res, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if string(b) != strconv.Itoa(first+10) {
		t.Errorf("AEM got %q bytes; want %d", b, first+10)
	}
}

func TestStreamingResponsesFlushAtOnce(t *testing.T) {
	for _, c := range []struct{ name, contentType string }{
		{"server-sent events", "text/event-stream"},
		{"unknown length", "application/json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			release := make(chan struct{})
			aem := newAEM(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", c.contentType)
				io.WriteString(w, "data: one\n\n")
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "data: two\n\n")
			})
			p := newProxy(t, nil, Route{Name: "author", Upstream: aem.url(t), Tokens: newTokens()})

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/events", nil)
			res, err := noRedirects.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			// AEM is still holding the response open: this line only
			// arrives if the proxy flushed it.
			line, err := br.ReadString('\n')
			if err != nil || line != "data: one\n" {
				t.Fatalf("first line %q, %v; want \"data: one\" before AEM finished", line, err)
			}
			close(release)
			rest, err := io.ReadAll(br)
			if err != nil || !strings.Contains(string(rest), "data: two") {
				t.Errorf("rest %q, %v; want the second event", rest, err)
			}
		})
	}
}

func TestCopyBufferSizes(t *testing.T) {
	bp := newBufferPool()
	for _, c := range []struct {
		length int64
		want   int
	}{
		{-1, copyBufferSize},
		{0, copyBufferSize},
		{largeBodySize - 1, copyBufferSize},
		{largeBodySize, largeCopyBufferSize},
		{1 << 40, largeCopyBufferSize},
	} {
		b := bp.get(c.length)
		if len(b) != c.want || cap(b) != c.want {
			t.Errorf("buffer for a %d-byte body has len %d, cap %d; want %d", c.length, len(b), cap(b), c.want)
		}
		bp.put(b)
	}
	bp.put(make([]byte, 100)) // a foreign buffer is dropped, not pooled
	if b := bp.get(-1); len(b) != copyBufferSize {
		t.Errorf("got a %d-byte buffer after putting a foreign one; want %d", len(b), copyBufferSize)
	}
}
