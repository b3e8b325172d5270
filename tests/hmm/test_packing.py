import numpy as np
import pytest

from tiedsci.hmm.packing import make_packing


@pytest.mark.parametrize("lengths", [[5], [3, 7, 1, 7, 2], [1, 1, 1]])
def test_pack_unpack_round_trip_and_time_blocks(lengths):
    pk = make_packing(np.array(lengths))
    n = sum(lengths)
    x = np.arange(n, dtype=float)
    packed = pk.pack(x)
    np.testing.assert_array_equal(pk.unpack(packed), x)
    # frame t of sequence j sits in block t; blocks hold sequences in decreasing length
    begins = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for j, (b, length) in enumerate(zip(begins, lengths)):
        pos = int(np.flatnonzero(pk.order == j)[0])
        for t in range(length):
            assert packed[pk.starts[t] + pos] == b + t
        assert pk.last_rows[pos] == pk.starts[length - 1] + pos
    assert sum(pk.batch_sizes) == n
    # prev_rows point at the previous frame of the same sequence
    rows = np.arange(pk.batch_sizes[0], n)
    np.testing.assert_array_equal(packed[pk.prev_rows] + 1, packed[rows])
