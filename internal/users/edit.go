package users

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// NewUser is a user to add with AddUser. Hash is a password hash (see Hash);
// the other fields are optional but for Name.
type NewUser struct {
	Name        string
	DisplayName string
	Email       string
	Phone       string
	Groups      []string
	Hash        string
}

// AddUser adds a user to the users file at path, creating the file (mode
// 0600) with a `users:` map if it does not exist. It fails if a user with
// the same name, ignoring case, already exists. Comments and fields this
// package does not know are kept; the file is replaced atomically and only
// if the result loads without error.
func AddUser(path string, u NewUser) error {
	if err := checkNewUser(u); err != nil {
		return err
	}
	return editFile(path, true, func(users *yaml.Node) error {
		for i := 0; i+1 < len(users.Content); i += 2 {
			if k := resolve(users.Content[i]); Canonical(k.Value) == Canonical(u.Name) || lookalikeKey(k.Value) == lookalikeKey(u.Name) {
				return fmt.Errorf("user %s already exists (as %s)", quoteName(u.Name), quoteName(k.Value))
			}
		}
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if u.DisplayName != "" {
			m.Content = append(m.Content, strNode("displayname"), strNode(u.DisplayName))
		}
		m.Content = append(m.Content, strNode("password"), quotedNode(u.Hash))
		if u.Email != "" {
			m.Content = append(m.Content, strNode("email"), strNode(u.Email))
		}
		if len(u.Groups) > 0 {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
			for _, g := range u.Groups {
				seq.Content = append(seq.Content, strNode(g))
			}
			m.Content = append(m.Content, strNode("groups"), seq)
		}
		if u.Phone != "" {
			m.Content = append(m.Content, strNode("phone"), quotedNode(u.Phone))
		}
		m.Content = append(m.Content, strNode("disabled"), boolNode(false))
		users.Content = append(users.Content, strNode(u.Name), m)
		return nil
	})
}

// SetPassword replaces the password hash of the user name (ignoring case).
// It fails if there is no such user.
func SetPassword(path, name, hash string) error {
	if err := CheckHash(hash); err != nil {
		return fmt.Errorf("password: %w", err)
	}
	return editUser(path, name, func(m *yaml.Node) error {
		return setField(m, "password", quotedNode(hash))
	})
}

// SetDisabled sets the `disabled` field of the user name (ignoring case). It
// fails if there is no such user.
func SetDisabled(path, name string, disabled bool) error {
	return editUser(path, name, func(m *yaml.Node) error {
		return setField(m, "disabled", boolNode(disabled))
	})
}

func checkNewUser(u NewUser) error {
	if err := CheckName(u.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if err := checkText(u.DisplayName); err != nil {
		return fmt.Errorf("displayname: %w", err)
	}
	if u.Hash == "" {
		return errors.New("password: missing")
	}
	if err := CheckHash(u.Hash); err != nil {
		return fmt.Errorf("password: %w", err)
	}
	if u.Email != "" {
		if err := CheckEmail(u.Email); err != nil {
			return fmt.Errorf("email: %w", err)
		}
	}
	if u.Phone != "" {
		if err := CheckPhone(u.Phone); err != nil {
			return fmt.Errorf("phone: %w", err)
		}
	}
	for _, g := range u.Groups {
		if err := CheckGroup(g); err != nil {
			return fmt.Errorf("groups: %w", err)
		}
	}
	return nil
}

// editUser runs fn on the fields map of the user name.
func editUser(path, name string, fn func(m *yaml.Node) error) error {
	return editFile(path, false, func(users *yaml.Node) error {
		for i := 0; i+1 < len(users.Content); i += 2 {
			if k := resolve(users.Content[i]); Canonical(k.Value) != Canonical(name) {
				continue
			}
			v := users.Content[i+1]
			switch {
			case v.Kind == yaml.AliasNode || v.Anchor != "":
				return fmt.Errorf("user %s: its entry uses a YAML anchor or alias; edit it by hand", quoteName(name))
			case isNull(v):
				m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: v.HeadComment, LineComment: v.LineComment, FootComment: v.FootComment}
				users.Content[i+1] = m
				v = m
			case v.Kind != yaml.MappingNode:
				return fmt.Errorf("user %s: entry is not a map of fields", quoteName(name))
			}
			return fn(v)
		}
		return fmt.Errorf("user %s not found", quoteName(name))
	})
}

// setField sets key to value in the map m, in place if the key is there
// (keeping its comments), else at the end.
func setField(m *yaml.Node, key string, value *yaml.Node) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml.ScalarNode || k.Value != key || k.Tag == "!!merge" {
			continue
		}
		old := m.Content[i+1]
		if old.Kind == yaml.AliasNode || old.Anchor != "" {
			return fmt.Errorf("%s: uses a YAML anchor or alias; edit it by hand", key)
		}
		value.HeadComment, value.LineComment, value.FootComment = old.HeadComment, old.LineComment, old.FootComment
		m.Content[i+1] = value
		return nil
	}
	m.Content = append(m.Content, strNode(key), value)
	return nil
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func quotedNode(s string) *yaml.Node {
	n := strNode(s)
	n.Style = yaml.DoubleQuotedStyle
	return n
}

func boolNode(b bool) *yaml.Node {
	v := "false"
	if b {
		v = "true"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: v}
}

// editFile reads the users file at path (following symlinks), lets fn change
// its `users` map, checks that the result loads, and replaces the file
// atomically. With create, a missing file, or one without a `users` key,
// starts as an empty `users:` map.
func editFile(path string, create bool, fn func(users *yaml.Node) error) error {
	target, err := filepath.EvalSymlinks(path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && create:
		target = path
	default:
		return err
	}
	unlock, err := lockEdits(target)
	if err != nil {
		return err
	}
	defer unlock()
	var data []byte
	_, data, err = readFile(target)
	exists := err == nil
	if err != nil && !(errors.Is(err, fs.ErrNotExist) && create) {
		return err
	}

	var root yaml.Node
	if err := safeYAML(func() error { return decodeOnly(data, &root) }); err != nil {
		return fmt.Errorf("%s: %s", path, err)
	}
	users, indent, err := editableUsers(&root, create)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := fn(users); err != nil {
		return err
	}

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(indent)
	if err := safeYAML(func() error { return enc.Encode(&root) }); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	out := buf.Bytes()
	if _, err := Parse(out); err != nil {
		return fmt.Errorf("%s: not changed, the result would not load: %w", path, err)
	}
	var expect []byte
	if exists {
		expect = data
	}
	return writeAtomic(target, out, expect)
}

// decodeOnly parses data into root, refusing data with more than one YAML
// document: the users file is the first one, and writing it back would drop
// the others.
func decodeOnly(data []byte, root *yaml.Node) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(root); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("not valid YAML: %s", yamlMessage(err))
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("not valid YAML: %s", yamlMessage(err))
	}
	return errors.New("has several YAML documents (---); edit it by hand")
}

// editLockWait bounds how long an edit waits for another one to finish.
const editLockWait = 10 * time.Second

// lockEdits serialises the edits of the users file at path (already free of
// symlinks) among processes that use this package: without it two edits
// that read the same content could both pass writeAtomic's check, and the
// second rename would silently undo the first. The lock is taken on the
// file's directory, so that it also covers creating the file and leaves
// nothing behind. Where the file system has no such locks (or the directory
// cannot be read), the edit goes on protected only by writeAtomic's check.
func lockEdits(path string) (unlock func(), err error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return func() {}, nil
	}
	deadline := time.Now().Add(editLockWait)
	for {
		busy, unsupported, err := tryLock(dir)
		switch {
		case err != nil:
			dir.Close()
			return nil, fmt.Errorf("%s: cannot lock for editing: %w", path, err)
		case unsupported:
			dir.Close()
			return func() {}, nil
		case !busy:
			return func() { dir.Close() }, nil // closing releases the lock
		case time.Now().After(deadline):
			dir.Close()
			return nil, fmt.Errorf("%s: another edit is in progress; try again", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// editableUsers finds (or, with create, makes) the `users` map of a parsed
// file, and guesses the file's indentation.
func editableUsers(root *yaml.Node, create bool) (*yaml.Node, int, error) {
	if root.Kind == 0 {
		if !create {
			return nil, 0, errors.New("no `users` map")
		}
		*root = yaml.Node{Kind: yaml.DocumentNode}
	}
	if root.Kind != yaml.DocumentNode {
		return nil, 0, errors.New("no `users` map")
	}
	if len(root.Content) == 0 || isNull(root.Content[0]) {
		if !create {
			return nil, 0, errors.New("no `users` map")
		}
		root.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, 0, errors.New("no `users` map (the file is not a YAML map)")
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != "users" {
			continue
		}
		switch {
		case v.Kind == yaml.AliasNode || v.Anchor != "":
			return nil, 0, errors.New("users: uses a YAML anchor or alias; edit it by hand")
		case isNull(v):
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: v.HeadComment, LineComment: v.LineComment, FootComment: v.FootComment}
			top.Content[i+1] = m
			return m, 2, nil
		case v.Kind != yaml.MappingNode:
			return nil, 0, errors.New("users: must be a map of user names to their fields")
		}
		indent := 2
		if len(v.Content) > 0 && v.Style&yaml.FlowStyle == 0 {
			if d := v.Content[0].Column - k.Column; d >= 2 && d <= 8 {
				indent = d
			}
		}
		return v, indent, nil
	}
	if !create {
		return nil, 0, errors.New("no `users` map")
	}
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	top.Content = append(top.Content, strNode("users"), m)
	return m, 2, nil
}

// writeAtomic replaces the file at path with data: a temporary file in the
// same directory, with the mode (and, when allowed, the owner) of the file
// it replaces or 0600, synced, then renamed over path. expect, when not nil,
// is the content the caller read: if the file changed since, nothing is
// written.
func writeAtomic(path string, data, expect []byte) (err error) {
	dir := filepath.Dir(path)
	mode := fs.FileMode(0o600)
	old, statErr := os.Stat(path)
	switch {
	case statErr == nil:
		mode = old.Mode().Perm()
	case errors.Is(statErr, fs.ErrNotExist):
		old = nil
		if expect != nil {
			return fmt.Errorf("%s: removed while being edited; try again", path)
		}
	default:
		return statErr
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if old != nil {
		chownLike(tmp, old)
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if expect != nil {
		now, rerr := os.ReadFile(path)
		if rerr != nil || !bytes.Equal(now, expect) {
			err = fmt.Errorf("%s: changed while being edited; try again", path)
			return err
		}
	} else if old == nil {
		if _, serr := os.Lstat(path); serr == nil {
			err = fmt.Errorf("%s: created while being edited; try again", path)
			return err
		}
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // make the rename durable; not supported everywhere
		d.Close()
	}
	return nil
}
