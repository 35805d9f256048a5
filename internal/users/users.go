// Package users reads, follows and edits the local users file: a YAML file
// compatible with Authelia's users_database.yml, whose passwords are argon2id
// or bcrypt hashes.
//
//	users:
//	  alice:
//	    displayname: Alice Example
//	    password: "$argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>"
//	    email: alice@example.com
//	    groups: [admins]
//	    phone: "+15551234567"
//	    disabled: false
//
// A file is accepted or refused as a whole: one invalid entry refuses it,
// with an error naming the user and the field. Keys this package does not
// know are tolerated. User names are case-insensitive (see Canonical).
package users

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
	"gopkg.in/yaml.v3"
)

// Limits on the values of a users file.
const (
	// MaxNameLen is the longest user name, in characters.
	MaxNameLen = 64
	// maxTextLen bounds display names, e-mail addresses and group names, in
	// characters.
	maxTextLen = 256
	// maxFileSize bounds the size of a users file.
	maxFileSize = 32 << 20
)

// User is one entry of the users file. A User reached through a DB is shared
// by every reader of that snapshot and must not be modified.
type User struct {
	// Name is the user's key as written in the file.
	Name string
	// DisplayName is the `displayname` field; empty when absent.
	DisplayName string
	// Email is the `email` field; empty when absent.
	Email string
	// Phone is the `phone` field, in E.164 form; empty when absent.
	Phone string
	// Groups is the `groups` field, in the file's order.
	Groups []string
	// Disabled is the `disabled` field: such a user cannot sign in.
	Disabled bool
	// Hash is the `password` field: an argon2id or bcrypt hash.
	Hash string
	// Credential is a short fingerprint of Hash (16 hex characters, the
	// first 8 bytes of its SHA-256): it changes when the password changes.
	Credential string
}

// DB is an immutable snapshot of one load of a users file. Its methods are
// safe for concurrent use.
type DB struct {
	byName  map[string]*User // by Canonical(name)
	byEmail map[string]*User // by lower-case e-mail; nil value: shared by several users
	sorted  []*User          // by canonical name
	dummy   string
}

// Canonical returns the canonical account key of a user name: its lower-case
// form. Two names with the same canonical key are the same account.
func Canonical(name string) string {
	return strings.ToLower(name)
}

// Lookup returns the user whose name equals name, ignoring case. It does not
// allocate for names of up to 256 bytes of ASCII, nor for names that are
// already lower-case.
func (db *DB) Lookup(name string) (*User, bool) {
	if db == nil || len(name) == 0 || len(name) > utf8.UTFMax*MaxNameLen {
		// Lower-casing keeps the number of runes: a longer input cannot
		// match a valid name.
		return nil, false
	}
	var buf [utf8.UTFMax * MaxNameLen]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= utf8.RuneSelf {
			if !utf8.ValidString(name) {
				return nil, false
			}
			u, ok := db.byName[strings.ToLower(name)]
			return u, ok
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	// The compiler does not allocate for a string conversion used as a map
	// key.
	u, ok := db.byName[string(buf[:len(name)])]
	return u, ok
}

// LookupEmail returns the user whose e-mail address equals email, ignoring
// case. An address shared by several users finds none of them.
func (db *DB) LookupEmail(email string) (*User, bool) {
	if db == nil || email == "" {
		return nil, false
	}
	u := db.byEmail[strings.ToLower(email)]
	return u, u != nil
}

// Users returns every user, sorted by canonical name. The slice is the
// caller's; the users are shared.
func (db *DB) Users() []*User {
	if db == nil {
		return nil
	}
	return slices.Clone(db.sorted)
}

// Len returns the number of users.
func (db *DB) Len() int {
	if db == nil {
		return 0
	}
	return len(db.sorted)
}

// DummyHash returns a hash, made at Parse, with the algorithm and parameters
// most common in the file (argon2id's m, t, p and key length, or bcrypt's
// cost); argon2id with Hash's defaults for a file without users. Checking an
// unknown user's password against it takes as long as checking a known
// user's, and never succeeds.
func (db *DB) DummyHash() string {
	if db == nil || db.dummy == "" {
		return dummyHash(defaultParams)
	}
	return db.dummy
}

// rawUser receives the fields of one user; yaml.Node fields keep what is
// written so that each can be checked with its own message. Other keys are
// ignored.
type rawUser struct {
	DisplayName yaml.Node `yaml:"displayname"`
	Password    yaml.Node `yaml:"password"`
	Email       yaml.Node `yaml:"email"`
	Phone       yaml.Node `yaml:"phone"`
	Groups      yaml.Node `yaml:"groups"`
	Disabled    yaml.Node `yaml:"disabled"`
}

// Parse reads a users file and checks every entry. It returns an error for
// data that is not YAML, has no `users` map, or has any invalid entry; the
// error names the user and the field, and never contains a password hash.
func Parse(data []byte) (*DB, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d MiB", maxFileSize>>20)
	}
	var root yaml.Node
	if err := safeYAML(func() error { return yaml.Unmarshal(data, &root) }); err != nil {
		return nil, fmt.Errorf("not valid YAML: %s", yamlMessage(err))
	}
	users, err := usersNode(&root)
	if err != nil {
		return nil, err
	}
	db := &DB{byName: map[string]*User{}, byEmail: map[string]*User{}}
	lookalikes := map[string]*User{} // by lookalikeKey
	counts := map[hashParams]int{}
	var order []hashParams // first appearance, for a stable tie-break
	if users != nil {
		for i := 0; i+1 < len(users.Content); i += 2 {
			u, params, err := parseUser(users.Content[i], users.Content[i+1])
			if err != nil {
				return nil, err
			}
			key := Canonical(u.Name)
			if prev, dup := db.byName[key]; dup {
				if prev.Name == u.Name {
					return nil, fmt.Errorf("user %s: defined twice", quoteName(u.Name))
				}
				return nil, fmt.Errorf("user %s: same name as %s (names are case-insensitive)", quoteName(u.Name), quoteName(prev.Name))
			}
			look := lookalikeKey(u.Name)
			if prev, dup := lookalikes[look]; dup {
				return nil, fmt.Errorf("user %s: same name as %s once Unicode forms and case are folded; the two would pass for each other", quoteName(u.Name), quoteName(prev.Name))
			}
			lookalikes[look] = u
			db.byName[key] = u
			db.sorted = append(db.sorted, u)
			if u.Email != "" {
				e := strings.ToLower(u.Email)
				if _, seen := db.byEmail[e]; seen {
					db.byEmail[e] = nil
				} else {
					db.byEmail[e] = u
				}
			}
			if counts[params] == 0 {
				order = append(order, params)
			}
			counts[params]++
		}
	}
	slices.SortFunc(db.sorted, func(a, b *User) int { return strings.Compare(Canonical(a.Name), Canonical(b.Name)) })
	common, best := defaultParams, 0
	for _, p := range order {
		if counts[p] > best {
			common, best = p, counts[p]
		}
	}
	db.dummy = dummyHash(common)
	return db, nil
}

// usersNode finds the `users` map of a parsed file; nil for `users:` with no
// value.
func usersNode(root *yaml.Node) (*yaml.Node, error) {
	errNoUsers := errors.New("no `users` map")
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, errNoUsers
	}
	top := resolve(root.Content[0])
	if top.Kind != yaml.MappingNode {
		return nil, errNoUsers
	}
	var file struct {
		Users yaml.Node `yaml:"users"`
	}
	if err := safeYAML(func() error { return top.Decode(&file) }); err != nil {
		return nil, errors.New(yamlMessage(err))
	}
	if file.Users.Kind == 0 {
		return nil, errNoUsers
	}
	users := resolve(&file.Users)
	switch {
	case isNull(users):
		return nil, nil
	case users.Kind != yaml.MappingNode:
		return nil, errors.New("users: must be a map of user names to their fields")
	}
	return users, nil
}

// parseUser checks one entry of the users map.
func parseUser(k, v *yaml.Node) (*User, hashParams, error) {
	k = resolve(k)
	if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
		return nil, hashParams{}, fmt.Errorf("users: line %d: a user name must be a plain string (no YAML merge keys or lists)", k.Line)
	}
	if isNull(k) {
		return nil, hashParams{}, fmt.Errorf("users: line %d: empty user name", k.Line)
	}
	u := &User{Name: k.Value}
	fail := func(field string, err error) (*User, hashParams, error) {
		if field == "" {
			return nil, hashParams{}, fmt.Errorf("user %s: %w", quoteName(u.Name), err)
		}
		return nil, hashParams{}, fmt.Errorf("user %s: %s: %w", quoteName(u.Name), field, err)
	}
	if err := CheckName(u.Name); err != nil {
		return fail("name", err)
	}
	v = resolve(v)
	if isNull(v) {
		return fail("password", errors.New("missing"))
	}
	if v.Kind != yaml.MappingNode {
		return fail("", errors.New("must be a map of fields (displayname, password, email, groups, …)"))
	}
	if err := checkFieldNames(v, 0); err != nil {
		return fail("", err)
	}
	var raw rawUser
	if err := safeYAML(func() error { return v.Decode(&raw) }); err != nil {
		return fail("", errors.New(yamlMessage(err)))
	}

	var err error
	if u.DisplayName, err = scalarString(&raw.DisplayName); err != nil {
		return fail("displayname", err)
	}
	if err := checkText(u.DisplayName); err != nil {
		return fail("displayname", err)
	}
	if u.Hash, err = scalarString(&raw.Password); err != nil {
		return fail("password", err)
	}
	if u.Hash == "" {
		return fail("password", errors.New("missing"))
	}
	ph, err := parseHash(u.Hash)
	if err != nil {
		return fail("password", err)
	}
	if u.Email, err = scalarString(&raw.Email); err != nil {
		return fail("email", err)
	}
	if u.Email != "" {
		if err := CheckEmail(u.Email); err != nil {
			return fail("email", err)
		}
	}
	if u.Phone, err = scalarString(&raw.Phone); err != nil {
		return fail("phone", err)
	}
	if u.Phone != "" {
		if err := CheckPhone(u.Phone); err != nil {
			return fail("phone", err)
		}
	}
	if u.Groups, err = groupList(&raw.Groups); err != nil {
		return fail("groups", err)
	}
	if n := resolve(&raw.Disabled); n.Kind != 0 && !isNull(n) {
		if n.Kind != yaml.ScalarNode || safeYAML(func() error { return n.Decode(&u.Disabled) }) != nil {
			return fail("disabled", errors.New("must be true or false"))
		}
	}
	sum := sha256.Sum256([]byte(u.Hash))
	u.Credential = hex.EncodeToString(sum[:8])
	return u, ph.hashParams, nil
}

// knownFields are the field names of a user entry, as rawUser reads them.
var knownFields = []string{"displayname", "password", "email", "phone", "groups", "disabled"}

// checkFieldNames refuses a field name that is one of knownFields written
// in another case or with '_' or '-' ("Disabled", "display_name"): yaml
// keys are case-sensitive, so such a field would be ignored like any
// unknown one, and `Disabled: true` would leave the account open. Maps
// merged in with `<<` are checked too.
func checkFieldNames(m *yaml.Node, depth int) error {
	if depth > 8 {
		return errors.New("YAML merge keys nested too deeply")
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := resolve(m.Content[i])
		if k.Kind != yaml.ScalarNode {
			continue
		}
		if k.Tag == "!!merge" {
			v := resolve(m.Content[i+1])
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, mm := range merged {
				if mm = resolve(mm); mm.Kind == yaml.MappingNode {
					if err := checkFieldNames(mm, depth+1); err != nil {
						return err
					}
				}
			}
			continue
		}
		if slices.Contains(knownFields, k.Value) {
			continue
		}
		folded := strings.Map(func(r rune) rune {
			if r == '_' || r == '-' {
				return -1
			}
			return unicode.ToLower(r)
		}, k.Value)
		if slices.Contains(knownFields, folded) {
			return fmt.Errorf("line %d: field %q is not a field twostep reads; write %q (field names are lower-case)", k.Line, k.Value, folded)
		}
	}
	return nil
}

// lookalikeKey folds a user name by Unicode compatibility (NFKC) and full
// case folding: "ａｄｍｉｎ", "Admin" and "admin" share one key, as do a
// precomposed "é" and "e" with a combining accent, or "ß" and "ss". Two users
// of one file may not share a key: they would look the same in the portal,
// to reviewers and in logs, and upstream apps that normalise Remote-User
// (NFKC, database collations) would take one for the other. Lookups still
// use Canonical: folding a sign-in name this far would let an identity
// provider's "ａｄｍｉｎ" claim name the admin.
func lookalikeKey(name string) string {
	return norm.NFKC.String(cases.Fold().String(norm.NFKC.String(name)))
}

// scalarString returns the text of a scalar field; "" for an absent or null
// one. Numbers and booleans are taken as written, as yaml.v3 does for a
// string field.
func scalarString(n *yaml.Node) (string, error) {
	n = resolve(n)
	switch {
	case n.Kind == 0 || isNull(n):
		return "", nil
	case n.Kind != yaml.ScalarNode || n.Tag == "!!binary":
		return "", errors.New("must be a string")
	}
	return n.Value, nil
}

// groupList returns the groups of a user.
func groupList(n *yaml.Node) ([]string, error) {
	n = resolve(n)
	switch {
	case n.Kind == 0 || isNull(n):
		return nil, nil
	case n.Kind != yaml.SequenceNode:
		return nil, errors.New("must be a list of group names")
	}
	groups := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		g, err := scalarString(item)
		if err != nil {
			return nil, errors.New("must be a list of group names")
		}
		if err := CheckGroup(g); err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// safeYAML runs a yaml.v3 call, turning a panic inside the library into an
// error so that no file can bring the process down.
func safeYAML(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return fn()
}

// yamlMessage shortens a yaml.v3 error: no "yaml: " prefix, no Go type
// names, one line.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if j := strings.Index(m, " in type "); j >= 0 {
			m = m[:j]
		}
		if j := strings.Index(m, "cannot unmarshal"); j >= 0 {
			// "cannot unmarshal !!str `$argon2…` into …" may quote a value.
			m = m[:j] + "unexpected value type"
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}

// quoteName quotes a user name for an error message, cut short if very long.
func quoteName(name string) string {
	if utf8.RuneCountInString(name) > MaxNameLen {
		r := []rune(name)
		return fmt.Sprintf("%q…", string(r[:MaxNameLen]))
	}
	return fmt.Sprintf("%q", name)
}

// CheckName reports whether name can be a user name: 1 to 64 printable
// characters of valid UTF-8, without whitespace or ':'.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	case utf8.RuneCountInString(name) > MaxNameLen:
		return fmt.Errorf("longer than %d characters", MaxNameLen)
	}
	for _, r := range name {
		switch {
		case unicode.IsSpace(r):
			return errors.New("contains whitespace")
		case r == ':':
			return errors.New("contains ':'")
		case !unicode.IsGraphic(r):
			return errors.New("contains a control or invisible character")
		}
	}
	return nil
}

// checkText checks a free-text value that ends up in headers and pages: no
// control characters, bounded length.
func checkText(s string) error {
	if utf8.RuneCountInString(s) > maxTextLen {
		return fmt.Errorf("longer than %d characters", maxTextLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// CheckEmail reports whether email is a bare e-mail address (no display
// name, no comment, exactly one '@').
func CheckEmail(email string) error {
	bad := errors.New("not a plain e-mail address (want name@example.com)")
	if len(email) > 254 || strings.Count(email, "@") != 1 {
		return bad
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Name != "" || a.Address != email {
		return bad
	}
	at := strings.IndexByte(email, '@')
	if at == 0 || at == len(email)-1 {
		return bad
	}
	return nil
}

// CheckPhone reports whether phone is an E.164 number: '+', a non-zero
// digit, then 6 to 14 more digits.
func CheckPhone(phone string) error {
	ok := len(phone) >= 8 && len(phone) <= 16 && phone[0] == '+' && phone[1] >= '1' && phone[1] <= '9'
	for i := 2; ok && i < len(phone); i++ {
		ok = phone[i] >= '0' && phone[i] <= '9'
	}
	if !ok {
		return errors.New("not an E.164 number (want +15551234567)")
	}
	return nil
}

// CheckGroup reports whether g can be a group name: not empty, no comma
// (groups are sent comma-joined upstream), no surrounding whitespace, no
// control characters.
func CheckGroup(g string) error {
	switch {
	case g == "":
		return errors.New("empty group name")
	case strings.Contains(g, ","):
		return fmt.Errorf("group %q contains a comma", g)
	case strings.TrimSpace(g) != g:
		return fmt.Errorf("group %q has surrounding whitespace", g)
	}
	if err := checkText(g); err != nil {
		return fmt.Errorf("group %q %v", g, err)
	}
	return nil
}
