import pytest

pytest.importorskip("plotly", reason="the dashboard needs plotly (pip install 'evoforge[dashboard]')")

from dashboard_runs import serve  # noqa: E402,F401  -- the fixture
