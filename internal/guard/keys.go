package guard

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/reload"
)

// minPlainKey is the shortest plain key a keys file may hold: a short key
// can be guessed by anyone allowed to try.
const minPlainKey = 16

// keyFile holds the API keys of one file, re-read when it changes.
type keyFile struct {
	path string
	log  zerolog.Logger

	set atomic.Pointer[keySet]
	// check lets one request at a time look at the file, at most once per
	// KeyCheckInterval; others go on with the keys they have.
	check reload.Throttle
}

// keySet is one reading of the file.
type keySet struct {
	digests [][sha256.Size]byte
	stamp   reload.Stamp
}

// valid compares the key's digest with every known digest, without
// stopping at a match, in constant time per digest.
func (k *keyFile) valid(key string) bool {
	k.maybeReload()
	d := digest(key)
	ok := false
	set := k.set.Load()
	for i := range set.digests {
		if equalDigest(&d, &set.digests[i]) {
			ok = true
		}
	}
	return ok
}

// maybeReload re-reads the file when its size or modification time changed,
// looking at most once per KeyCheckInterval.
func (k *keyFile) maybeReload() {
	if !k.check.TryBegin() {
		return
	}
	defer k.check.End()
	st, err := reload.Stat(k.path)
	if err != nil {
		k.log.Warn().Str("file", k.path).Err(err).Msg("API keys file unreadable; keeping the current keys")
		return
	}
	if st.Equal(k.set.Load().stamp) {
		return
	}
	if err := k.load(); err != nil {
		k.log.Warn().Str("file", k.path).Err(err).Msg("API keys file refused; keeping the current keys")
	}
}

// Reload reads the file now. On error the current keys stay.
func (k *keyFile) Reload() error {
	k.check.Begin()
	defer k.check.End()
	return k.load()
}

// load reads the file. The stamp is taken first, so that a file changed
// while it is read is read again at the next check.
func (k *keyFile) load() error {
	stamp, err := reload.Stat(k.path)
	if err != nil {
		return err
	}
	f, err := os.Open(k.path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory, want a file", k.path)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return fmt.Errorf("read API keys %s: %w", k.path, err)
	}
	digests, err := parseKeys(buf.Bytes())
	if err != nil {
		return fmt.Errorf("API keys %s: %w", k.path, err)
	}
	old := k.set.Swap(&keySet{digests: digests, stamp: stamp})
	if old != nil {
		k.log.Info().Str("file", k.path).Int("keys", len(digests)).Msg("API keys reloaded")
	}
	return nil
}

// ParseKeys parses the content of an API keys file as a Guard does and
// returns how many keys it holds. Its error names the malformed lines by
// number, never their content.
func ParseKeys(data []byte) (int, error) {
	d, err := parseKeys(data)
	return len(d), err
}

const (
	// maxKeyLine is the longest line a keys file may have.
	maxKeyLine = 64 << 10
	// maxLineErrors is how many malformed lines an error names: a file
	// that is not a keys file at all would otherwise name every line.
	maxLineErrors = 10
)

// parseKeys reads a keys file. Its error names every malformed line by
// number (up to maxLineErrors of them), never a line's content.
func parseKeys(data []byte) ([][sha256.Size]byte, error) {
	// Windows editors may start a file with a UTF-8 byte order mark, which
	// would otherwise become part of the first key.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var (
		out      [][sha256.Size]byte
		problems []string
		bad      int
	)
	malformed := func(n int, msg string) {
		if bad++; bad <= maxLineErrors {
			problems = append(problems, fmt.Sprintf("line %d: %s", n, msg))
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxKeyLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if h, ok := strings.CutPrefix(line, "sha256:"); ok {
			var d [sha256.Size]byte
			if len(h) != hex.EncodedLen(sha256.Size) {
				malformed(n, "want sha256: and 64 hex digits")
				continue
			}
			if _, err := hex.Decode(d[:], []byte(h)); err != nil {
				malformed(n, "want sha256: and 64 hex digits")
				continue
			}
			out = append(out, d)
			continue
		}
		if len(line) < minPlainKey {
			malformed(n, fmt.Sprintf("a plain key must be at least %d bytes", minPlainKey))
			continue
		}
		out = append(out, digest(line))
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		malformed(n+1, fmt.Sprintf("longer than %d KiB; is this an API keys file? (reading stopped there)", maxKeyLine>>10))
	} else if err != nil {
		return nil, err
	}
	if bad > maxLineErrors {
		problems = append(problems, fmt.Sprintf("and %d more malformed lines", bad-maxLineErrors))
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}
