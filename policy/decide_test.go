package policy

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	recent := now.Add(-5 * time.Minute)
	old := now.Add(-time.Hour)

	one := &Rule{Level: OneFactor}
	two := &Rule{Level: TwoFactor}
	admins := &Rule{Level: TwoFactor, Groups: []string{"admins", "ops"}}
	alice := &Rule{Level: OneFactor, Users: []string{"Alice", "bob"}}
	both := &Rule{Level: OneFactor, Groups: []string{"admins"}, Users: []string{"alice"}}
	stepUp := &Rule{Level: TwoFactor, MaxAge: 15 * time.Minute}
	noDevice := &Rule{Level: TwoFactor, NoTrustedDevice: true}

	stranger := &Subject{State: Stranger}
	half := &Subject{State: HalfSignedIn, User: "alice"}
	enrolling := &Subject{State: Enrolling, User: "alice"}
	oneF := &Subject{State: SignedInOneFactor, User: "alice", Groups: []string{"users"}}
	oneFAdmin := &Subject{State: SignedInOneFactor, User: "alice", Groups: []string{"admins"}}
	twoF := &Subject{State: SignedInTwoFactor, User: "alice", Groups: []string{"users", "admins"}, SecondFactorAt: recent}
	twoFOld := &Subject{State: SignedInTwoFactor, User: "alice", Groups: []string{"admins"}, SecondFactorAt: old}
	twoFNoTime := &Subject{State: SignedInTwoFactor, User: "alice"}
	twoFDevice := &Subject{State: SignedInTwoFactor, User: "alice", SecondFactorAt: recent, ViaTrustedDevice: true}
	carol := &Subject{State: SignedInTwoFactor, User: "carol", Groups: []string{"ADMINS"}, SecondFactorAt: recent}
	unknown := &Subject{State: 42, User: "alice", Groups: []string{"admins"}}

	tests := []struct {
		name string
		rule *Rule
		sub  *Subject
		want Outcome
	}{
		{"bypass stranger", &Rule{Level: Bypass}, stranger, Allow},
		{"bypass unknown state", &Rule{Level: Bypass}, unknown, Allow},
		{"bypass nil subject", &Rule{Level: Bypass}, nil, Allow},
		{"deny signed in", &Rule{Level: Deny}, twoF, Forbid},
		{"deny stranger", &Rule{Level: Deny}, stranger, Forbid},

		{"stranger one_factor", one, stranger, SignIn},
		{"stranger two_factor", two, stranger, SignIn},
		{"stranger group rule", admins, stranger, SignIn},
		{"half one_factor", one, half, SecondFactor},
		{"half two_factor", two, half, SecondFactor},
		{"enrolling one_factor", one, enrolling, Enroll},
		{"enrolling two_factor", two, enrolling, Enroll},
		{"enrolling non-member never sees enrolment", admins, enrolling, Forbid},
		{"enrolling member enrols", admins, &Subject{State: Enrolling, User: "alice", Groups: []string{"ops"}}, Enroll},
		{"enrolling user not listed", alice, &Subject{State: Enrolling, User: "carol"}, Forbid},
		{"enrolling user listed", alice, enrolling, Enroll},

		{"one factor on one_factor", one, oneF, Allow},
		{"two factors on one_factor", one, twoF, Allow},
		{"one factor on two_factor", two, oneF, Enroll},
		{"two factors on two_factor", two, twoF, Allow},
		{"two factors via device", two, twoFDevice, Allow},
		{"two factors without time", two, twoFNoTime, Allow},

		{"group member", admins, twoF, Allow},
		{"not a member", admins, &Subject{State: SignedInTwoFactor, User: "x", Groups: []string{"users"}}, Forbid},
		{"no groups at all", admins, twoFNoTime, Forbid},
		{"group compare is exact", admins, carol, Forbid},
		{"non-member never sees enrolment", admins, oneF, Forbid},
		{"member at one factor enrols", admins, oneFAdmin, Enroll},
		{"user listed", alice, oneF, Allow},
		{"user case-insensitive", alice, &Subject{State: SignedInOneFactor, User: "BOB"}, Allow},
		{"user not listed", alice, &Subject{State: SignedInTwoFactor, User: "carol"}, Forbid},
		{"empty user", alice, &Subject{State: SignedInTwoFactor}, Forbid},
		{"group and user both needed", both, oneFAdmin, Allow},
		{"group without user", both, &Subject{State: SignedInOneFactor, User: "bob", Groups: []string{"admins"}}, Forbid},
		{"user without group", both, oneF, Forbid},

		{"max_age fresh", stepUp, twoF, Allow},
		{"max_age exactly", stepUp, &Subject{State: SignedInTwoFactor, SecondFactorAt: now.Add(-15 * time.Minute)}, Allow},
		{"max_age expired", stepUp, twoFOld, SecondFactor},
		{"max_age never given", stepUp, twoFNoTime, SecondFactor},
		{"max_age one factor", stepUp, oneF, Enroll},
		{"no_trusted_device via device", noDevice, twoFDevice, SecondFactor},
		{"no_trusted_device via code", noDevice, twoF, Allow},
		{"no_trusted_device stranger", noDevice, stranger, SignIn},

		{"unknown state", two, unknown, Forbid},
		{"unknown state one_factor", one, unknown, Forbid},
		{"unknown level", &Rule{Level: 77}, twoF, Forbid},
		{"unknown level stranger", &Rule{Level: 77}, stranger, Forbid},
		{"nil rule", nil, twoF, Forbid},
		{"nil subject", two, nil, Forbid},
	}
	for _, tt := range tests {
		if got := Decide(tt.rule, tt.sub, now); got != tt.want {
			t.Errorf("%s: Decide = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDecideNoAlloc(t *testing.T) {
	now := time.Now()
	r := &Rule{Level: TwoFactor, Groups: []string{"a", "b", "admins"}, Users: []string{"x", "Alice"}, MaxAge: time.Hour}
	s := &Subject{State: SignedInTwoFactor, User: "alice", Groups: []string{"users", "admins"}, SecondFactorAt: now}
	if n := testing.AllocsPerRun(100, func() { Decide(r, s, now) }); n != 0 {
		t.Errorf("Decide: %v allocations", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	now := time.Now()
	r := &Rule{Level: TwoFactor, Groups: []string{"a", "b", "admins"}, Users: []string{"x", "Alice"}, MaxAge: time.Hour}
	s := &Subject{State: SignedInTwoFactor, User: "alice", Groups: []string{"users", "admins"}, SecondFactorAt: now}
	b.ReportAllocs()
	for b.Loop() {
		if Decide(r, s, now) != Allow {
			b.Fatal("not allowed")
		}
	}
}

func TestStrings(t *testing.T) {
	for l := Level(0); l <= Deny; l++ {
		if got, ok := ParseLevel(l.String()); !ok || got != l {
			t.Errorf("ParseLevel(%q) = %v, %v", l.String(), got, ok)
		}
	}
	if Level(9).String() != "invalid" || Outcome(9).String() != "invalid" {
		t.Error("invalid values must print as invalid")
	}
	for o, want := range map[Outcome]string{Allow: "allow", Forbid: "forbid", SignIn: "sign_in", SecondFactor: "second_factor", Enroll: "enroll"} {
		if o.String() != want {
			t.Errorf("%d.String() = %q", o, o.String())
		}
	}
}
