package notify

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"
)

// Fallback tries each sender in order until one succeeds: the first `sms`
// (or `voice`) block of the Caddyfile, then the next. When every one fails
// the error is an [*AllFailedError] naming them all.
//
// A Fallback is safe for concurrent use as long as its fields are not
// changed while it sends.
type Fallback struct {
	// Senders are tried in this order.
	Senders []Sender
	// Logger, if set, gets a warning for every provider that fails
	// (provider, channel and the error; never the recipient or the code).
	Logger *zap.Logger
	// OnFailure, if set, is called for every provider that fails, also when
	// a later one succeeds (for metrics by provider).
	OnFailure func(provider string, err error)
	// OnSuccess, if set, is called with the provider that delivered.
	OnSuccess func(provider string)
}

// AllFailedError is the error of a [Fallback] whose every provider failed.
// It unwraps to the last provider's error (a [*DeliveryError]).
type AllFailedError struct {
	// Providers are the names of the providers tried, in order.
	Providers []string
	// Errs are their errors, in the same order.
	Errs []error
}

// Error says that every provider failed and lists each with its error.
func (e *AllFailedError) Error() string {
	var b strings.Builder
	b.WriteString("notify: every provider failed (")
	b.WriteString(strings.Join(e.Providers, ", "))
	b.WriteString(")")
	for i, err := range e.Errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(strings.TrimPrefix(err.Error(), "notify: "))
	}
	return b.String()
}

// Unwrap returns the last provider's error.
func (e *AllFailedError) Unwrap() error {
	if len(e.Errs) == 0 {
		return nil
	}
	return e.Errs[len(e.Errs)-1]
}

// ErrNoProvider is returned by a [Fallback] without senders.
var ErrNoProvider = errors.New("notify: no provider configured")

// Name lists the providers: "twilio+webhook".
func (f *Fallback) Name() string {
	names := make([]string, len(f.Senders))
	for i, s := range f.Senders {
		names[i] = s.Name()
	}
	return strings.Join(names, "+")
}

// Send delivers m through the first provider that accepts it.
func (f *Fallback) Send(ctx context.Context, m Message) error {
	_, err := f.Deliver(ctx, m)
	return err
}

// Deliver is Send that also returns the name of the provider that delivered.
// Once ctx is done the remaining providers are not tried (they are listed
// as failed with ctx's error).
func (f *Fallback) Deliver(ctx context.Context, m Message) (string, error) {
	if len(f.Senders) == 0 {
		return "", ErrNoProvider
	}
	all := &AllFailedError{}
	for _, s := range f.Senders {
		name := s.Name()
		var err error
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = &DeliveryError{Provider: name, Err: ctxErr}
		} else if err = s.Send(ctx, m); err == nil {
			if f.OnSuccess != nil {
				f.OnSuccess(name)
			}
			return name, nil
		}
		var de *DeliveryError
		if !errors.As(err, &de) {
			var phone string
			if m.Channel == ChannelSMS || m.Channel == ChannelVoice {
				phone = m.To
			}
			err = failure(name, 0, err, hider(phone, m.Code))
		}
		all.Providers = append(all.Providers, name)
		all.Errs = append(all.Errs, err)
		if f.OnFailure != nil {
			f.OnFailure(name, err)
		}
		if f.Logger != nil {
			f.Logger.Warn("delivery failed",
				zap.String("provider", name),
				zap.String("channel", string(m.Channel)),
				zap.String("error", err.Error()))
		}
	}
	return "", all
}
