"""Document exchange between organisations: IHE MHD (ITI-65, ITI-67, ITI-68), the notified-pull
inbox of notification Tasks, and durable delivery of notifications to partner endpoints."""
