package config

import (
	"encoding"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const referenceDoc = "../../docs/config.md"

// yamlKey is one key path of the configuration, e.g.
// "routes[].basic.password_file", with the default a file that leaves it
// out gets (zero if the code's default is the zero value).
type yamlKey struct {
	path string
	def  reflect.Value
}

var (
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
)

// isLeaf reports whether t is decoded from one YAML scalar rather than
// walked key by key: it decodes itself, or is not a struct.
func isLeaf(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return true
	}
	return t.Kind() != reflect.Struct
}

// configKeys walks a struct type (with its default value v) and returns
// every YAML key path, sections included, skipping yaml:"-" fields. A
// slice of structs contributes "key" and then "key[].field".
func configKeys(t reflect.Type, v reflect.Value, prefix string) []yamlKey {
	var out []yamlKey
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous && strings.Contains(opts, "inline") {
			out = append(out, configKeys(f.Type, fv, prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default
		}
		p := prefix + name
		out = append(out, yamlKey{path: p, def: fv})
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if isLeaf(ft) {
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !isLeaf(ft.Elem()) {
				// Defaults of list entries: what RouteDefaults fills in.
				elem := reflect.New(ft.Elem()).Elem()
				if ft.Elem() == reflect.TypeFor[Route]() {
					elem = reflect.ValueOf(RouteDefaults(Route{}))
				}
				out = append(out, configKeys(ft.Elem(), elem, p+"[].")...)
			}
			continue
		}
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				fv = reflect.New(ft)
			}
			fv = fv.Elem()
		}
		out = append(out, configKeys(ft, fv, p+".")...)
	}
	return out
}

var (
	rowKeyRe = regexp.MustCompile("^\\|\\s*`([a-z_]+(?:\\[\\])?(?:\\.[a-z_]+(?:\\[\\])?)*)`\\s*\\|([^|]*)\\|")
	codeRe   = regexp.MustCompile("`([^`]*)`")
)

// documentedKeys reads the reference's tables: first column a key path in
// backquotes, second its default.
func documentedKeys(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := rowKeyRe.FindStringSubmatch(line); m != nil {
			if _, dup := rows[m[1]]; dup {
				t.Errorf("docs/config.md documents %s twice", m[1])
			}
			rows[m[1]] = strings.TrimSpace(m[2])
		}
	}
	return rows
}

// TestReferenceDocumentsEveryKey checks docs/config.md against the Config
// struct: every key is documented, every documented key exists, and a
// documented default agrees with Default() and RouteDefaults wherever the
// code's default is not the zero value.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	keys := configKeys(reflect.TypeFor[Config](), reflect.ValueOf(Default()), "")
	if len(keys) < 30 {
		t.Fatalf("found only %d keys; the walk is broken", len(keys))
	}
	doc := documentedKeys(t)
	known := map[string]bool{}
	for _, k := range keys {
		known[k.path] = true
		cell, ok := doc[k.path]
		if !ok {
			t.Errorf("docs/config.md does not document %s", k.path)
			continue
		}
		if want, ok := defaultText(k.def); ok && !sameDefault(k.def, cell) {
			t.Errorf("docs/config.md: default of %s is %q; the code's is %s", k.path, cell, want)
		}
	}
	for p := range doc {
		if !known[p] {
			t.Errorf("docs/config.md documents %s, which is not a key of config.Config", p)
		}
	}
}

// defaultText describes a non-zero default scalar; ok is false for zero
// values and sections.
func defaultText(v reflect.Value) (string, bool) {
	if !v.IsValid() || v.IsZero() {
		return "", false
	}
	switch v.Kind() {
	case reflect.Struct, reflect.Pointer, reflect.Slice, reflect.Map:
		return "", false
	}
	if v.Type() == durationType {
		return time.Duration(v.Int()).String(), true
	}
	return strconv.Quote(strings.TrimSpace(yamlScalar(v))), true
}

func yamlScalar(v reflect.Value) string {
	b, err := yaml.Marshal(v.Interface())
	if err != nil {
		return ""
	}
	return string(b)
}

// sameDefault reports whether the doc's default cell (its first code span,
// or the whole cell) states v.
func sameDefault(v reflect.Value, cell string) bool {
	if m := codeRe.FindStringSubmatch(cell); m != nil {
		cell = m[1]
	}
	cell = strings.TrimSpace(cell)
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(cell)
		return err == nil && int64(d) == v.Int()
	case v.CanInt():
		n, err := strconv.ParseInt(cell, 10, 64)
		return err == nil && n == v.Int()
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(cell)
		return err == nil && b == v.Bool()
	case v.Kind() == reflect.String:
		return cell == v.String()
	}
	return false
}

// TestReferenceExampleDecodes checks that the YAML examples in
// docs/config.md are valid configurations.
func TestReferenceExampleDecodes(t *testing.T) {
	data, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) == 0 {
		t.Fatal("docs/config.md has no yaml example")
	}
	for i, b := range blocks {
		c, err := Decode(strings.NewReader(b[1]))
		if err != nil {
			t.Errorf("example %d: %v", i+1, err)
			continue
		}
		// Files the example names need not exist here.
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for j := range c.Routes {
			for _, p := range []*string{&c.Routes[j].Credentials, &c.Routes[j].Basic.PasswordFile, &c.Routes[j].CAFile, &c.Routes[j].Access.APIKeysFile} {
				if *p != "" {
					*p = f
				}
			}
		}
		if c.IMS.CAFile != "" {
			c.IMS.CAFile = f
		}
		if err := c.Validate(); err != nil {
			t.Errorf("example %d does not validate:\n%v", i+1, err)
		}
	}
}
