package caddymodule

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twostep-auth/twostep/internal/users"
)

// identity is what an allowed request carries for one user: the groups
// joined, and each placeholder value already boxed for the replacer, so
// that passing a signed-in request on allocates nothing for them. Users
// file entries never change (a reload makes new ones), so neither does an
// identity.
type identity struct {
	groups                      string
	vID, vGroups, vEmail, vName any
}

func newIdentity(u *users.User) *identity {
	g := strings.Join(u.Groups, ",")
	return &identity{groups: g, vID: u.Name, vGroups: g, vEmail: u.Email, vName: u.DisplayName}
}

// maxIdentities bounds the memo; beyond it the memo starts again empty.
const maxIdentities = 100_000

// identities memoises identity by users-file entry.
type identities struct {
	t atomic.Pointer[identityTable]
}

type identityTable struct {
	m sync.Map // *users.User → *identity
	n atomic.Int64
}

// get returns u's identity. A user who exists only at the identity
// provider is a new value on every request: external skips the memo.
func (c *identities) get(u *users.User, external bool) *identity {
	if external {
		return newIdentity(u)
	}
	t := c.t.Load()
	if t == nil {
		c.t.CompareAndSwap(nil, new(identityTable))
		t = c.t.Load()
	}
	if v, ok := t.m.Load(u); ok {
		return v.(*identity)
	}
	id := newIdentity(u)
	if t.n.Add(1) > maxIdentities {
		c.reset()
		return id
	}
	t.m.Store(u, id)
	return id
}

// reset forgets every identity (after a users-file reload the old entries
// are never asked for again).
func (c *identities) reset() { c.t.Store(new(identityTable)) }
