package notify

import (
	"context"
	"sync"
	"time"
)

// DefaultOutboxCapacity is how many messages the developer outbox keeps.
const DefaultOutboxCapacity = 100

// Outbox is the developer outbox (dev_outbox): it keeps the last messages in
// memory, newest first, for /.twostep/outbox and GET /.twostep/api/outbox.
// It is safe for concurrent use.
type Outbox struct {
	mu       sync.Mutex
	capacity int
	entries  []OutboxEntry // oldest first
	subs     map[chan OutboxEntry]struct{}
	now      func() time.Time
}

// OutboxEntry is one recorded message, in the JSON form of the outbox API.
type OutboxEntry struct {
	// Channel is how the message would travel.
	Channel Channel `json:"channel"`
	// To is the recipient.
	To string `json:"to"`
	// Body is the text; for email, the body without the subject.
	Body string `json:"body"`
	// Code is the one-time code the message carries, or "".
	Code string `json:"code"`
	// Time is when the message was recorded (UTC).
	Time time.Time `json:"time"`
}

// NewOutbox makes an outbox that keeps the last capacity messages; a
// capacity below 1 means [DefaultOutboxCapacity].
func NewOutbox(capacity int) *Outbox {
	if capacity < 1 {
		capacity = DefaultOutboxCapacity
	}
	return &Outbox{
		capacity: capacity,
		entries:  make([]OutboxEntry, 0, capacity),
		subs:     make(map[chan OutboxEntry]struct{}),
		now:      time.Now,
	}
}

// record adds m, evicting the oldest entry when full, and tells subscribers.
func (o *Outbox) record(m Message) {
	e := OutboxEntry{Channel: m.Channel, To: m.To, Body: m.Body, Code: m.Code}
	o.mu.Lock()
	defer o.mu.Unlock()
	e.Time = o.now().UTC()
	if len(o.entries) == o.capacity {
		copy(o.entries, o.entries[1:])
		o.entries = o.entries[:len(o.entries)-1]
	}
	o.entries = append(o.entries, e)
	for ch := range o.subs {
		select {
		case ch <- e:
		default: // a slow subscriber misses entries rather than blocking senders
		}
	}
}

// List returns a copy of the kept messages, newest first.
func (o *Outbox) List() []OutboxEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]OutboxEntry, len(o.entries))
	for i, e := range o.entries {
		out[len(o.entries)-1-i] = e
	}
	return out
}

// Len is the number of kept messages.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries)
}

// Subscribe returns a channel that receives every message recorded from now
// on, and a function that ends the subscription (and closes the channel).
// The channel buffers up to the outbox's capacity; a subscriber that falls
// further behind misses entries, it never slows senders down.
func (o *Outbox) Subscribe() (<-chan OutboxEntry, func()) {
	ch := make(chan OutboxEntry, o.capacity)
	o.mu.Lock()
	o.subs[ch] = struct{}{}
	o.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			o.mu.Lock()
			delete(o.subs, ch)
			o.mu.Unlock()
			close(ch)
		})
	}
}

// Wait returns the first message recorded after the call for which match
// returns true (every message when match is nil), or ctx's error.
func (o *Outbox) Wait(ctx context.Context, match func(OutboxEntry) bool) (OutboxEntry, error) {
	ch, cancel := o.Subscribe()
	defer cancel()
	for {
		select {
		case e := <-ch:
			if match == nil || match(e) {
				return e, nil
			}
		case <-ctx.Done():
			return OutboxEntry{}, ctx.Err()
		}
	}
}

// Sender returns a Sender that records every message into the outbox and
// always succeeds. name is its Name ("outbox" when empty).
func (o *Outbox) Sender(name string) Sender {
	if name == "" {
		name = "outbox"
	}
	return &outboxSender{o: o, name: name}
}

type outboxSender struct {
	o    *Outbox
	name string
}

func (s *outboxSender) Name() string { return s.name }

func (s *outboxSender) Send(_ context.Context, m Message) error {
	s.o.record(m)
	return nil
}

// Tee returns a Sender that records every message into the outbox and then
// hands it to s, so that dev_outbox shows what was sent out. The message is
// recorded before s is tried, whatever s answers; s's error is Tee's error
// and s's Name is Tee's Name. A nil s makes Tee the outbox's own Sender, a
// nil o makes it s.
func Tee(o *Outbox, s Sender) Sender {
	switch {
	case o == nil:
		return s
	case s == nil:
		return o.Sender("")
	}
	return &teeSender{o: o, s: s}
}

type teeSender struct {
	o *Outbox
	s Sender
}

func (t *teeSender) Name() string { return t.s.Name() }

func (t *teeSender) Send(ctx context.Context, m Message) error {
	t.o.record(m)
	return t.s.Send(ctx, m)
}
