package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestOutboxCapacity(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		sends    int
		wantLen  int
	}{
		{"default capacity is 100", 0, 150, 100},
		{"100 evicts the oldest", 100, 101, 100},
		{"below capacity keeps all", 100, 7, 7},
		{"capacity 1", 1, 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOutbox(tc.capacity)
			s := o.Sender("")
			if s.Name() != "outbox" {
				t.Errorf("Name = %q", s.Name())
			}
			for i := range tc.sends {
				m := Message{Channel: ChannelSMS, To: "+15551234567", Body: fmt.Sprintf("message %d", i), Code: fmt.Sprint(i)}
				if err := s.Send(context.Background(), m); err != nil {
					t.Fatal(err)
				}
			}
			list := o.List()
			if len(list) != tc.wantLen || o.Len() != tc.wantLen {
				t.Fatalf("List has %d entries, Len %d, want %d", len(list), o.Len(), tc.wantLen)
			}
			// Newest first: entry i is message sends-1-i.
			for i, e := range list {
				if want := fmt.Sprintf("message %d", tc.sends-1-i); e.Body != want {
					t.Fatalf("entry %d is %q, want %q", i, e.Body, want)
				}
				if i > 0 && e.Time.After(list[i-1].Time) {
					t.Errorf("entry %d is newer than entry %d", i, i-1)
				}
			}
		})
	}
}

func TestOutboxListIsACopy(t *testing.T) {
	o := NewOutbox(10)
	_ = o.Sender("dev").Send(context.Background(), Message{Channel: ChannelEmail, To: "a@example.com", Body: "one"})
	l := o.List()
	l[0].Body = "changed"
	if o.List()[0].Body != "one" {
		t.Error("List shares memory with the outbox")
	}
}

func TestOutboxEntryJSON(t *testing.T) {
	o := NewOutbox(10)
	o.now = func() time.Time { return time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600)) }
	_ = o.Sender("dev").Send(context.Background(), Message{Channel: ChannelVoice, To: "+15551234567", User: "alice", Body: "Your code is 1, 2, 3.", Code: "123"})
	b, err := json.Marshal(o.List())
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"channel":"voice","to":"+15551234567","body":"Your code is 1, 2, 3.","code":"123","time":"2025-03-04T04:06:07Z"}]`
	if string(b) != want {
		t.Errorf("JSON\n %s\nwant\n %s", b, want)
	}
}

func TestOutboxConcurrent(t *testing.T) {
	o := NewOutbox(100)
	sub, cancelSub := o.Subscribe()
	defer cancelSub()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := Tee(o, o.Sender(fmt.Sprintf("w%d", w))) // two records per message
			for i := range each {
				_ = s.Send(context.Background(), Message{Channel: ChannelSMS, To: "+15551234567", Body: fmt.Sprintf("%d/%d", w, i)})
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if n := len(o.List()); n > 100 {
					t.Errorf("List has %d entries", n)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("senders did not finish")
	}
	if o.Len() != 100 {
		t.Errorf("Len = %d, want 100", o.Len())
	}
	got := 0
	for {
		select {
		case <-sub:
			got++
			continue
		default:
		}
		break
	}
	if got == 0 || got > 100 {
		t.Errorf("subscriber got %d entries, want 1..100 (its buffer)", got)
	}
}

func TestOutboxWait(t *testing.T) {
	o := NewOutbox(10)
	s := o.Sender("dev")
	// Already in the outbox: Wait only returns messages recorded later.
	_ = s.Send(context.Background(), Message{Channel: ChannelSMS, To: "+15550000002", Body: "old", Code: "111111"})

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			_ = s.Send(ctx, Message{Channel: ChannelSMS, To: "+15550000003", Body: "other"})
			_ = s.Send(ctx, Message{Channel: ChannelSMS, To: "+15550000002", Body: "new", Code: "222222"})
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	e, err := o.Wait(ctx, func(e OutboxEntry) bool { return e.To == "+15550000002" })
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if e.Code != "222222" {
		t.Errorf("Wait returned %+v, want the new message", e)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if _, err := o.Wait(short, func(OutboxEntry) bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait = %v, want DeadlineExceeded", err)
	}
}

func TestTee(t *testing.T) {
	_, bad := newReceiver(t, http.StatusServiceUnavailable)
	okRC, good := newReceiver(t, 0)
	msg := Message{Channel: ChannelSMS, To: "+15551234567", User: "alice", Body: "Your code is 123456", Code: "123456"}
	tests := []struct {
		name    string
		real    Sender
		wantErr bool
	}{
		{"real sender fails", &Webhook{URL: bad.URL, Secret: testWebhookSecret}, true},
		{"real sender delivers", &Webhook{URL: good.URL, Secret: testWebhookSecret}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOutbox(10)
			s := Tee(o, tc.real)
			if s.Name() != "webhook" {
				t.Errorf("Name = %q, want the real sender's", s.Name())
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			err := s.Send(ctx, msg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Send = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				if de := asDelivery(t, err); de.Status != http.StatusServiceUnavailable {
					t.Errorf("Status %d", de.Status)
				}
				assertNoSecrets(t, err, testWebhookSecret, msg.Code)
			}
			l := o.List()
			if len(l) != 1 || l[0].Code != "123456" || l[0].To != msg.To || l[0].Body != msg.Body || l[0].Channel != ChannelSMS {
				t.Errorf("outbox %+v", l)
			}
		})
	}
	if okRC.count() != 1 {
		t.Errorf("the real receiver got %d messages", okRC.count())
	}
	o := NewOutbox(1)
	if Tee(o, nil).Name() != "outbox" {
		t.Error("Tee(o, nil) is not the outbox")
	}
	real := &Webhook{}
	if Tee(nil, real) != Sender(real) {
		t.Error("Tee(nil, s) is not s")
	}
}
