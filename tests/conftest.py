pytest_plugins = ["support.databases"]
