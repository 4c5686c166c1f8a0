import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.spatial.transform import Rotation

from pose.rotations import exp_map, geodesic_angle, log_map, slerp

rotvecs = st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3).map(np.array)


def is_rotation(R: np.ndarray) -> bool:
    return np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(R), 1.0)


@settings(max_examples=200, deadline=None)
@given(rotvecs)
def test_exp_matches_scipy_and_log_inverts_it(v):
    R = exp_map(v)
    assert np.allclose(R, Rotation.from_rotvec(v).as_matrix(), atol=1e-12)
    assert np.allclose(exp_map(log_map(R)), R, atol=1e-9)


def test_log_near_pi_and_zero():
    for v in ([np.pi, 0, 0], [0, np.pi - 1e-6, 0], [1.859375, 1.72265625, 1.85546875], [1e-12, 0, 0], [0, 0, 0]):
        R = exp_map(np.array(v))
        assert np.allclose(exp_map(log_map(R)), R, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(rotvecs, rotvecs, st.floats(0.0, 1.0))
def test_slerp_stays_on_so3_and_moves_along_the_geodesic(a, b, weight):
    A, B = exp_map(a), exp_map(b)
    R = slerp(A, B, weight)
    assert is_rotation(R)
    total = geodesic_angle(A, B)
    assert np.isclose(geodesic_angle(A, R), weight * total, atol=1e-7)
    assert np.isclose(geodesic_angle(R, B), (1 - weight) * total, atol=1e-7)


def test_slerp_endpoints_and_batch():
    A = Rotation.random(23, random_state=0).as_matrix()
    B = Rotation.random(23, random_state=1).as_matrix()
    assert np.allclose(slerp(A, B, 0.0), A) and np.allclose(slerp(A, B, 1.0), B)
    assert slerp(A, B, 0.3).shape == (23, 3, 3)
