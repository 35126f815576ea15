# The ilastik backend services and workers. Build: docker build -t ilastikbackend .
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Exactly the versions the tests ran with (scripts/lock.sh).
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
# A portable build (no -march=native): the image may run on other machines than it was built on.
# The package is installed like any other (src layout); the 2017 launchers in /app import it from there.
RUN pip install --no-cache-dir --no-deps --no-build-isolation --config-settings=cmake.define.ILASTIKBACKEND_NATIVE=OFF .
# Run as an unprivileged user.
RUN useradd --create-home ilastik
USER ilastik
EXPOSE 9000 8888 8080
CMD ["python", "-m", "ilastikbackend", "--help"]
