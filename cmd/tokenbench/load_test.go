package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<20 + 12345, 1<<maxValueLen - 1}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of [0, %d)", v, i, histBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if hi-lo > max(lo/subCount, 0)+1 && i >= 2*subCount {
			t.Fatalf("bucket %d = [%d, %d] wider than 1/%d of its value", i, lo, hi, subCount)
		}
	}
	// Consecutive buckets tile the value range without gaps or overlaps.
	for i := 1; i < histBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestPercentiles(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"one value", []time.Duration{42}, 50, 42},
		{"exact small values, p50", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5},
		{"exact small values, p90", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9},
		{"exact small values, p100", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 100, 10},
		{"negative counts as zero", []time.Duration{-5}, 50, 0},
		{"kept within max", []time.Duration{1000, 1001}, 100, 1001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tc.values {
				h.Record(v)
			}
			if got := h.Percentile(tc.p); got != tc.want {
				t.Fatalf("p%v = %d, want %d", tc.p, got, tc.want)
			}
		})
	}
}

func TestPercentilesOfManyValuesAreWithinPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var values []time.Duration
	var h Histogram
	for range 100000 {
		v := time.Duration(r.ExpFloat64() * float64(300*time.Microsecond))
		values = append(values, v)
		h.Record(v)
	}
	slices.Sort(values)
	for _, p := range []float64{50, 90, 99, 99.9} {
		exact := values[int(p/100*float64(len(values)))-1]
		got := h.Percentile(p)
		if diff := float64(got-exact) / float64(exact); diff > 1.0/subCount || diff < -1.0/subCount {
			t.Errorf("p%v = %s, exact %s: off by %.2f%%", p, got, exact, diff*100)
		}
	}
	if h.Count() != 100000 {
		t.Fatalf("count %d", h.Count())
	}
}

func TestMergeEqualsRecordingInOne(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i*i) * time.Nanosecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged Histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&Histogram{})
	if merged != all {
		t.Fatalf("merged: n=%d min=%d max=%d mean=%s; recorded in one: n=%d min=%d max=%d mean=%s",
			merged.Count(), merged.min, merged.max, merged.Mean(), all.Count(), all.min, all.max, all.Mean())
	}
	var empty Histogram
	if empty.Percentile(50) != 0 || empty.Mean() != 0 {
		t.Fatal("an empty histogram reports values")
	}
}

func TestParseInts(t *testing.T) {
	got, err := parseInts("1, 16,64")
	if err != nil || !slices.Equal(got, []int{1, 16, 64}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,x", "-4"} {
		if _, err := parseInts(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
