package caddymodule

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/users"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `twostep` app: everything shared by every site of one Caddy
// process (users, store, secret, session and regulation settings). It
// survives `caddy reload` without dropping sessions: the store is shared
// across configurations through a usage pool.
type App struct {
	// UsersFile is the path of the users file (Authelia-compatible YAML).
	// It is re-read when it changes. Required.
	UsersFile string `json:"users_file,omitempty"`

	// Store selects where sessions and counters live. Default: bolt in
	// Caddy's data directory.
	Store *StoreConfig `json:"store,omitempty"`

	// Secret keys cookies and at-rest encryption (at least 32 bytes as
	// written). When absent, one is generated and kept in the store.
	Secret string `json:"secret,omitempty"`

	// CookieDomain shares one sign-in among all subdomains of this domain.
	CookieDomain string `json:"cookie_domain,omitempty"`

	// TwoStep is "optional" (default): each user decides whether to use
	// two-step verification.
	TwoStep string `json:"two_step,omitempty"`

	// Session lifetimes.
	Session *SessionConfig `json:"session,omitempty"`

	// Regulation bounds password guessing per user and per client IP.
	Regulation *RegulationConfig `json:"regulation,omitempty"`

	// SiteName is shown on the portal pages. Default: "Sign in".
	SiteName string `json:"site_name,omitempty"`

	ctx     caddy.Context
	logger  *zap.Logger
	users   *users.File
	poolKey string

	run *appRun
}

// appRun is the app's running state (kept behind a pointer so that App
// values can be copied before they are provisioned).
type appRun struct {
	mu      sync.Mutex
	service atomic.Pointer[account.Service]
	cancel  context.CancelFunc
}

// StoreConfig selects the store backend.
type StoreConfig struct {
	// Type is "bolt" (the embedded store).
	Type string `json:"type,omitempty"`
	// Path of the bolt file. Default: twostep/twostep.db in Caddy's data dir.
	Path string `json:"path,omitempty"`
}

// SessionConfig sets session lifetimes.
type SessionConfig struct {
	// Idle ends a session unused for this long. Default 30m.
	Idle caddy.Duration `json:"idle,omitempty"`
	// Lifetime ends a session this long after sign-in. Default 12h.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
}

// RegulationConfig sets the password-guessing limits.
type RegulationConfig struct {
	// MaxRetries failures within FindTime cause a ban. Default 5.
	MaxRetries int `json:"max_retries,omitempty"`
	// FindTime is the window failures are counted in. Default 10m.
	FindTime caddy.Duration `json:"find_time,omitempty"`
	// BanTime is how long a ban lasts. Default 15m.
	BanTime caddy.Duration `json:"ban_time,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "twostep",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets defaults and loads the users file. It does no network I/O
// and does not open the store (Start does), so `caddy validate` runs beside
// a live server.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.run = new(appRun)
	if a.Store == nil {
		a.Store = &StoreConfig{Type: "bolt"}
	}
	if a.Store.Type == "" {
		a.Store.Type = "bolt"
	}
	if a.Store.Type == "bolt" && a.Store.Path == "" {
		a.Store.Path = filepath.Join(caddy.AppDataDir(), "twostep", "twostep.db")
	}
	if a.Session == nil {
		a.Session = &SessionConfig{}
	}
	if a.Session.Idle == 0 {
		a.Session.Idle = caddy.Duration(30 * time.Minute)
	}
	if a.Session.Lifetime == 0 {
		a.Session.Lifetime = caddy.Duration(12 * time.Hour)
	}
	if a.Regulation == nil {
		a.Regulation = &RegulationConfig{}
	}
	if a.Regulation.MaxRetries == 0 {
		a.Regulation.MaxRetries = 5
	}
	if a.Regulation.FindTime == 0 {
		a.Regulation.FindTime = caddy.Duration(10 * time.Minute)
	}
	if a.Regulation.BanTime == 0 {
		a.Regulation.BanTime = caddy.Duration(15 * time.Minute)
	}
	if a.TwoStep == "" {
		a.TwoStep = "optional"
	}
	if err := a.Validate(); err != nil {
		return err
	}
	a.CookieDomain = strings.ToLower(strings.TrimSuffix(a.CookieDomain, "."))
	if a.UsersFile != "" {
		f, err := users.Open(a.UsersFile, a.logger.Named("users"))
		if err != nil {
			return fmt.Errorf("twostep: users_file: %w", err)
		}
		a.users = f
	}
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	if a.UsersFile == "" {
		return errors.New("twostep: users_file is required")
	}
	switch a.Store.Type {
	case "bolt":
	default:
		return fmt.Errorf("twostep: store: unknown type %q (want bolt)", a.Store.Type)
	}
	if a.Secret != "" && len(a.Secret) < 32 {
		return fmt.Errorf("twostep: secret is %d bytes long; it must be at least 32", len(a.Secret))
	}
	if a.TwoStep != "optional" {
		return fmt.Errorf("twostep: two_step %q is not supported (want optional)", a.TwoStep)
	}
	if a.Session.Idle < 0 || a.Session.Lifetime < 0 {
		return errors.New("twostep: session: durations must be positive")
	}
	if time.Duration(a.Session.Idle) > time.Duration(a.Session.Lifetime) {
		return fmt.Errorf("twostep: session: idle (%s) is longer than lifetime (%s)",
			time.Duration(a.Session.Idle), time.Duration(a.Session.Lifetime))
	}
	if a.Regulation.MaxRetries < 0 || a.Regulation.FindTime < 0 || a.Regulation.BanTime < 0 {
		return errors.New("twostep: regulation: values must be positive")
	}
	if strings.ContainsAny(a.CookieDomain, "/:*@ ") {
		return fmt.Errorf("twostep: cookie_domain %q must be a bare domain name", a.CookieDomain)
	}
	return nil
}

// pooledStore is a store shared by every configuration that names the same
// file, so that a reload (which provisions the new app before the old one
// stops) never opens the file twice.
type pooledStore struct {
	store.Store
	stop context.CancelFunc
}

// Destruct closes the store when the last configuration using it is gone.
func (p *pooledStore) Destruct() error {
	p.stop()
	return p.Store.Close()
}

var stores = caddy.NewUsagePool()

// Start opens (or shares) the store, settles the secret and starts the
// users-file watcher.
func (a *App) Start() error {
	a.poolKey = "bolt:" + a.Store.Path
	val, _, err := stores.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
		db, err := bolt.Open(a.Store.Path, bolt.Options{})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		log := a.logger.Named("store")
		db.StartSweeper(ctx, time.Minute, time.Now, func(err error) {
			log.Error("sweeping expired records", zap.Error(err))
		})
		return &pooledStore{Store: db, stop: cancel}, nil
	})
	if err != nil {
		return fmt.Errorf("twostep: opening store %s: %w", a.Store.Path, err)
	}
	st := val.(*pooledStore)
	secret, err := a.secret(st)
	if err != nil {
		_, _ = stores.Delete(a.poolKey)
		return err
	}
	svc, err := account.New(account.Config{
		SessionIdle:     time.Duration(a.Session.Idle),
		SessionLifetime: time.Duration(a.Session.Lifetime),
		Regulation: account.Regulation{
			MaxRetries: a.Regulation.MaxRetries,
			FindTime:   time.Duration(a.Regulation.FindTime),
			BanTime:    time.Duration(a.Regulation.BanTime),
		},
		Secret: secret,
	}, st, a.users, nil, a.logger)
	if err != nil {
		_, _ = stores.Delete(a.poolKey)
		return fmt.Errorf("twostep: %w", err)
	}
	svc.SetAuditLogger(a.logger.Named("audit"))
	ctx, cancel := context.WithCancel(context.Background())
	a.users.Watch(ctx)
	a.run.mu.Lock()
	a.run.service.Store(svc)
	a.run.cancel = cancel
	a.run.mu.Unlock()
	return nil
}

// secret returns the configured secret, or the one kept in the store
// (generated on first start).
func (a *App) secret(st store.Store) ([]byte, error) {
	if a.Secret != "" {
		return []byte(a.Secret), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, err := st.PutIfAbsent(ctx, "config:secret", b, 0, time.Now())
	if err != nil {
		return nil, fmt.Errorf("twostep: reading the secret from the store: %w", err)
	}
	if len(v) < 32 {
		return nil, errors.New("twostep: the secret kept in the store is too short; set `secret`")
	}
	return v, nil
}

// Stop stops the watcher and releases this configuration's use of the store.
func (a *App) Stop() error {
	a.run.mu.Lock()
	defer a.run.mu.Unlock()
	if a.run.cancel != nil {
		a.run.cancel()
		a.run.cancel = nil
	}
	if a.run.service.Swap(nil) != nil {
		if _, err := stores.Delete(a.poolKey); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup releases what Provision acquired.
func (a *App) Cleanup() error {
	if a.users != nil {
		return a.users.Close()
	}
	return nil
}

// Service returns the running account service, or nil before Start or
// after Stop (callers answer 503).
func (a *App) Service() *account.Service { return a.run.service.Load() }

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Destructor   = (*pooledStore)(nil)
)
