"""The reliability summary line: inputs tried, faults injected, runs that lost data (must be 0)."""

FAULTS: list[tuple[str, str, bool]] = []  # (fault, what the user saw, data lost?)


def pytest_terminal_summary(terminalreporter):
    from tests.reliability.test_inputs import INPUTS_TRIED
    from tests.reliability.test_loader_fuzz import CASES

    lost = sum(1 for _, _, lost in FAULTS if lost)
    terminalreporter.write_line(
        f"reliability: {len(INPUTS_TRIED)} inputs tried, {CASES} loader fuzz cases, {len(FAULTS)} faults "
        f"injected, {lost} runs lost data")
