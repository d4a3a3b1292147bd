"""The Flask prediction service: `create_app()` is thin glue over `predmaint.model.predict_readings`."""
