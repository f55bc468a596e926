"""Contract tests every Store backend must pass (LocalStore now; RemoteStore, MongoStore later)."""
