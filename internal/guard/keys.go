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
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/reload"
)

// minPlainKey is the shortest plain key a keys file may hold: a short key
// can be guessed by anyone allowed to try.
const minPlainKey = 16

// keyFile holds the API keys of one file, re-read when it changes (looked
// at, by one request at a time, at most once per KeyCheckInterval) or on
// Reload.
type keyFile struct {
	digests *reload.Value[[][sha256.Size]byte]
}

func newKeyFile(path string, now func() time.Time, log zerolog.Logger) (*keyFile, error) {
	log = log.With().Str("file", path).Logger()
	v, err := reload.NewValue([]string{path}, KeyCheckInterval, now,
		func() ([][sha256.Size]byte, error) { return readKeys(path) },
		reload.Events[[][sha256.Size]byte]{
			Loaded: func(_, cur [][sha256.Size]byte) {
				log.Info().Int("keys", len(cur)).Msg("API keys reloaded")
			},
			Refused: func(err error) {
				log.Warn().Err(err).Msg("API keys file refused; keeping the current keys")
			},
			Unreadable: func(err error) {
				log.Warn().Err(err).Msg("API keys file unreadable; keeping the current keys")
			},
		})
	if err != nil {
		return nil, err
	}
	return &keyFile{digests: v}, nil
}

// valid compares the key's digest with every known digest, without
// stopping at a match, in constant time per digest.
func (k *keyFile) valid(key string) bool {
	d := digest(key)
	ok := false
	digests := k.digests.Get()
	for i := range digests {
		if equalDigest(&d, &digests[i]) {
			ok = true
		}
	}
	return ok
}

// Reload reads the file now. On error the current keys stay.
func (k *keyFile) Reload() error { return k.digests.Reload() }

// readKeys reads and parses a keys file.
func readKeys(path string) ([][sha256.Size]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, want a file", path)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("read API keys %s: %w", path, err)
	}
	digests, err := parseKeys(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("API keys %s: %w", path, err)
	}
	return digests, nil
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
