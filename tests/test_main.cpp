// tests/test_main.cpp — the doctest runner shared by every test translation unit.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
