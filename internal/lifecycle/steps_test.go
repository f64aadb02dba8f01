package lifecycle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRunUndoesChangedStepsNewestFirst(t *testing.T) {
	var log []string
	mk := func(name string, out outcome, err error) step {
		return step{
			name: name,
			do:   func() (outcome, error) { log = append(log, "do "+name); return out, err },
			undo: func() error { log = append(log, "undo "+name); return nil },
		}
	}
	boom := errors.New("boom")
	_, err := run([]step{mk("a", changed, nil), mk("b", unchanged, nil), mk("c", noted, nil), mk("d", unchanged, boom), mk("e", changed, nil)})
	if !errors.Is(err, boom) || err.Error() != "d: boom" {
		t.Fatalf("err = %v", err)
	}
	want := []string{"do a", "do b", "do c", "do d", "undo c", "undo a"}
	if !reflect.DeepEqual(log, want) {
		t.Errorf("log = %v, want %v", log, want)
	}
}

// A step that fails after it began (e.g. a rules batch that committed one
// table of two) is undone with the others.
func TestRunUndoesAFailingStepThatBegan(t *testing.T) {
	var log []string
	_, err := run([]step{
		{name: "a", do: func() (outcome, error) { return changed, nil }, undo: func() error { log = append(log, "undo a"); return nil }},
		{name: "b", do: func() (outcome, error) { return changed, errors.New("half") }, undo: func() error { log = append(log, "undo b"); return nil }},
	})
	if err == nil || !reflect.DeepEqual(log, []string{"undo b", "undo a"}) {
		t.Errorf("err = %v, log = %v", err, log)
	}
}

func TestRunReportsUndoFailures(t *testing.T) {
	stuck := errors.New("stuck")
	_, err := run([]step{
		{name: "a", do: func() (outcome, error) { return changed, nil }, undo: func() error { return stuck }},
		{name: "b", do: func() (outcome, error) { return unchanged, errors.New("no") }},
	})
	if !errors.Is(err, stuck) || !strings.Contains(err.Error(), "undo a: stuck") {
		t.Errorf("err = %v", err)
	}
}

// A step whose errors name it already is not named twice.
func TestRunNamesAStepOnce(t *testing.T) {
	_, err := run([]step{{name: "attach lo to br0", named: true,
		do: func() (outcome, error) { return unchanged, errors.New("attach lo to br0: not supported") }}})
	if err == nil || err.Error() != "attach lo to br0: not supported" {
		t.Errorf("err = %v", err)
	}
}

// Only changes to the host are reported: a step that only noted something
// (e.g. one more user of an ip_forward already on) is not.
func TestRunReturnsChanges(t *testing.T) {
	changes, err := run([]step{
		{name: "a", do: func() (outcome, error) { return changed, nil }},
		{name: "b", do: func() (outcome, error) { return unchanged, nil }},
		{name: "c", do: func() (outcome, error) { return noted, nil }},
	})
	if err != nil || !reflect.DeepEqual(changes, []string{"a"}) {
		t.Errorf("changes = %v, err = %v", changes, err)
	}
}

// A repair (rules a network had, made whole again) stays when a later step
// fails: the network serves VMs, and undoing it would break them. It is
// reported with the error.
func TestRunKeepsRepairs(t *testing.T) {
	var log []string
	mk := func(name string, out outcome, err error) step {
		return step{
			name: name,
			do:   func() (outcome, error) { return out, err },
			undo: func() error { log = append(log, "undo "+name); return nil },
		}
	}
	kept, err := run([]step{mk("a", changed, nil), mk("rules", repaired, nil), mk("c", noted, nil), mk("d", changed, errors.New("no"))})
	if err == nil || !reflect.DeepEqual(log, []string{"undo d", "undo c", "undo a"}) || !reflect.DeepEqual(kept, []string{"rules"}) {
		t.Errorf("err = %v, log = %v, kept = %v", err, log, kept)
	}
	changes, err := run([]step{mk("a", changed, nil), mk("rules", repaired, nil), mk("c", noted, nil)})
	if err != nil || !reflect.DeepEqual(changes, []string{"a", "rules"}) {
		t.Errorf("changes = %v, err = %v", changes, err)
	}
}
