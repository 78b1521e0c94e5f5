"""The reliability summary line: inputs tried, faults injected, runs that lost data (must be 0)."""

from tests.reliability.helpers import FAULTS, INPUTS_TRIED, LOADER_CASES


def pytest_terminal_summary(terminalreporter):
    lost = sum(1 for _, _, lost in FAULTS if lost)
    terminalreporter.write_line(
        f"reliability: {len(INPUTS_TRIED)} inputs tried, {sum(LOADER_CASES)} loader fuzz cases, {len(FAULTS)} "
        f"faults injected, {lost} runs lost data")
